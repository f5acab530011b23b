"""DAG files to DAG objects: imports, the trial-import child, the live folder, S3."""
