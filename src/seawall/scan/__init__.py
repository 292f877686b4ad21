"""Bulk scanning on Dask: folders, archives, WARC crawls and object stores, resumable by partition."""
