"""Where jobs run: the job board a server's sessions share, the worker, the quiet TF start."""
