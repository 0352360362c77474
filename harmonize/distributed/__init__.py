"""The only package that imports Ray: the session, the streaming run, distributed training, jobs."""
