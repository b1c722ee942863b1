"""Integrations with other libraries, each behind an extra of its own (nothing here is
imported by taskfire itself):

    taskfire.contrib.otel       OpenTelemetry tracing filter      pip install 'taskfire[otel]'
    taskfire.contrib.flask      Flask extension, dashboard        pip install 'taskfire[flask]'
    taskfire.contrib.django     Django app: settings, worker command, dashboard, on_commit
                                                                  pip install 'taskfire[django]'
    taskfire.contrib.starlette  the dashboard mounted in Starlette    pip install 'taskfire[starlette]'
    taskfire.contrib.fastapi    the dashboard behind FastAPI dependencies
                                                                  pip install 'taskfire[fastapi]'
"""
