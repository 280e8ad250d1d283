"""talbench agent: the process that runs on every node and its probes.

Knows nothing of the coordinator, Kubernetes or reports: it takes bounded probe jobs over a
versioned HTTP API and answers with raw measurements.
"""
