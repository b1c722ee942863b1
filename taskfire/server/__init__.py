"""What `taskfire worker` runs: a server (server.py) supervising worker processes
(worker.py), each fetching jobs and running them through the performer (performer.py),
storing outcomes in groups (finisher.py), and firing recurring jobs (scheduler.py)."""
