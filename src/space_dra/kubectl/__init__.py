"""``kubectl space``: a read-only view of a driver's claims, for the people who make them.

Installed as the console script ``kubectl-space``, which kubectl runs for ``kubectl space``.
It answers "which namespace did my pod get, is it ready, what was put in it" without
JSONPath, using the user's own kubeconfig and RBAC, and never writes anything.

One concern per module, data flowing one way:

- :mod:`.kubeconfig` finds the user's kubeconfig, context and default namespace as kubectl does;
- :mod:`.fetch` makes the API calls (through :mod:`space_dra.kube`), keeping what RBAC forbids
  as a part's error instead of failing;
- :mod:`.model` and :mod:`.detail` turn the fetched objects into rows (pure functions);
- :mod:`.table` and :mod:`.structured` render them for people and for programs;
- :mod:`.cli` is the command line.
"""
