# taskfire's image: the worker by default; the dashboard with `taskfire dashboard ...`.
# Your jobs: copy your package in below and set TASKFIRE_MODULES (or pass the modules as
# arguments), e.g.  COPY myapp ./myapp  and  TASKFIRE_MODULES=myapp.jobs
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY taskfire ./taskfire
COPY dashboard ./dashboard
RUN pip install ".[dashboard]" \
 && useradd --system --no-create-home --shell /usr/sbin/nologin taskfire

# The sample jobs of `taskfire up --demo` until you set your own.
ENV TASKFIRE_MODULES=taskfire.demo
USER taskfire

# Workers stop gracefully on SIGTERM (running jobs get --shutdown-timeout, 15 s by default):
# give them longer than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["taskfire", "worker", "--queues", "critical,default,low"]
