"""The kubelet plugin: the node side of the driver."""
