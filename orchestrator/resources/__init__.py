"""What task code reaches while it runs: Variables, Connections, secrets at rest, AWS
clients, and the services handle through which it reaches the store."""
