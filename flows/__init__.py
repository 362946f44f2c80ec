"""Entry points: the ``maskae`` command line (and, as the pipeline grows, Prefect flows)."""
