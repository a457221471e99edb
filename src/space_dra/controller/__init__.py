"""The controller: the only component that provisions or deletes namespaces."""
