"""What a DAG file declares: DAGs, the operator base, dependencies and TaskFlow."""
