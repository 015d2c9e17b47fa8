"""The public site under a surge, with wrk: (a) nginx serving a static file of the same bytes as the app's
home page, the baseline; (b) the app serving `/`; (c) nginx serving the static mirror's home page through
the README's configuration (`bench/nginx-public.conf`, the mirror first); (d) the app answering a matching
`If-None-Match` with 304. Each at the same connection count for the same time, identity encoding for all
(no `Accept-Encoding: gzip`), in rounds that alternate the four, on one server and one nginx. The baseline
serves its file with the same `open_file_cache` as the README's server.

The app runs as `accord serve --no-access-log` (uvicorn, as the README runs it behind nginx) on a fresh
database, seeded through its API with published updates in both languages (one corrected, one retracted),
two active emergencies and answered rumours; the app itself writes the static mirror as it publishes. nginx runs with
`worker_processes` = CPU count. Beside each rate: the CPU time the server and wrk spent per request, and
what the rest of the machine took meanwhile; from the CPU costs, the rates an otherwise idle machine would
give (shared machines vary a lot; CPU per request much less). nginx and wrk are installed with apt-get
when missing (as root).

`bench/public.py [sqlite] [postgresql[:WORKERS]]`: SQLite with one app process (SQLite allows no more),
PostgreSQL with one per CPU unless told; both by default.
"""

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlmodel import Session

from bench.common import PROJECT, free_port, fresh_database, report_target
from service.auth import hash_password
from service.db import create_db_engine, write_engine
from service.users.models import Role, User

HERE = Path(__file__).resolve().parent
NGINX_SITE = HERE / "nginx-public.conf"
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 50))
SECONDS = float(os.environ.get("BENCH_SECONDS", 10))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
WARM_UP_SECONDS = 2
CPUS = os.cpu_count() or 1
PASSWORD = "bench-password"
TARGET_APP_RATIO, TARGET_APP_P99_MS, TARGET_MIRROR_GAP = 0.15, 50.0, 0.10
IDENTITY = "Accept-Encoding: identity"


# --- nginx and wrk ---------------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def ensure_installed(*packages: str) -> None:
    """Installs the Debian packages whose command is missing (as root), or says how to."""
    found = {"nginx": nginx_binary, "wrk": lambda: shutil.which("wrk")}
    missing = [p for p in packages if not found[p]()]
    if not missing:
        return
    if os.geteuid() != 0:
        names = " ".join(missing)
        sys.exit(f"Missing: {names}. Install them as root: apt-get install --no-install-recommends {names}")
    print(f"Installing {' '.join(missing)} with apt-get...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def site_config(*, listen: str, mirror_dir: Path, app: str) -> str:
    """The README's nginx configuration with its placeholders filled."""
    text = NGINX_SITE.read_text()
    for placeholder, value in (("@LISTEN@", listen), ("@MIRROR_DIR@", str(mirror_dir)), ("@APP@", app)):
        text = text.replace(placeholder, value)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"placeholders left unfilled in {NGINX_SITE.name}: {left}"
    return text


def file_cache() -> str:
    """The README configuration's `open_file_cache` lines: the baseline serves its file with them too."""
    return "".join(line + "\n" for line in NGINX_SITE.read_text().splitlines() if "open_file_cache" in line)


def main_config(workdir: Path, *, sites: list[str], workers: int = CPUS) -> str:
    """An nginx.conf of its own (pid, logs and temporary files under `workdir`) around `sites`. nginx logs
    every request, as Debian's does and as `accord serve` does (whose log goes to /dev/null here too)."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {workdir / ('tmp-' + kind)};" for kind in kinds)
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read the mirror in private temp folders
    body = "\n".join(sites)
    return f"""{user}worker_processes {workers};
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    access_log /dev/null combined;
{temp}
{body}
}}
"""


@contextmanager
def nginx(workdir: Path, sites: list[str], ports: list[int]) -> Iterator[subprocess.Popen]:
    """nginx in the foreground with `sites`, until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, sites=sites))
    binary = nginx_binary()
    check = subprocess.run([binary, "-t", "-q", "-c", conf, "-p", workdir], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"nginx refuses its configuration:\n{check.stderr}")
    proc = subprocess.Popen([binary, "-c", conf, "-p", workdir, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        for port in ports:
            _wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()}") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


@dataclass
class Measured:
    name: str
    server: str  # "nginx" or "app": whose CPU serves the requests
    processes: int  # how many processes of it serve (nginx workers, app workers)
    rate: float
    p50: float
    p99: float
    requests: int
    bad: int  # answers other than 2xx/3xx, and socket errors
    cpu: dict[str, float]  # CPUs each used during the run: the server, wrk, and the rest of the machine

    def cost(self, who: str) -> float:
        """Microseconds of CPU `who` spent per request."""
        return self.cpu[who] / self.rate * 1e6 if self.rate else 0.0

    @property
    def idle_rate(self) -> float:
        """The rate this run's CPU costs allow on this machine were it otherwise idle: the server and wrk
        share its CPUs, and the server uses at most one CPU per process. Shared machines vary; this less."""
        server, load = self.cost(self.server), self.cost(self.server) + self.cost("wrk")
        return min(CPUS / load, self.processes / server) * 1e6 if server else 0.0

    def line(self, baseline: "Measured | None") -> str:
        ratio = f"{self.rate / baseline.rate:5.2f}" if baseline else "     "
        return (
            f"  {self.name:<36} {self.rate:7.0f}/s {ratio}  p50 {self.p50:6.2f} ms  p99 {self.p99:6.1f} ms  "
            f"{self.server} {self.cost(self.server):5.1f} us + wrk {self.cost('wrk'):4.1f} us  "
            f"others {self.cpu['others']:.2f}  bad {self.bad}"
        )


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNIT[unit]


def wrk(
    name: str,
    url: str,
    *,
    headers: list[str],
    seconds: float,
    watch: dict[str, list[int]],
    server: str = "",
    processes: int = 1,
) -> Measured:
    """One wrk run; `watch` names groups of process ids whose CPU time is reported, `server` the one that
    answers with `processes` processes."""
    command = ["wrk", f"-t{CPUS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    for header in headers:
        command += ["-H", header]
    before = {group: _cpu_seconds(pids) for group, pids in watch.items()}
    before["wrk"], before["machine"] = _children_cpu_seconds(), _machine_busy_seconds()
    started = time.monotonic()
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    cpu = {group: (_cpu_seconds(pids) - before[group]) / elapsed for group, pids in watch.items()}
    cpu["wrk"] = (_children_cpu_seconds() - before["wrk"]) / elapsed
    # What other work on the machine took meanwhile: shared machines make the figures vary.
    cpu["others"] = max(0.0, (_machine_busy_seconds() - before["machine"]) / elapsed - sum(cpu.values()))
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "99" not in latency:
        raise RuntimeError(f"wrk's output has no latency distribution:\n{out}")
    bad = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)", out))
    return Measured(
        name=name,
        server=server,
        processes=processes,
        rate=float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)[1]),
        p50=_ms(latency["50"]),
        p99=_ms(latency["99"]),
        requests=int(re.search(r"^\s+(\d+) requests in", out, re.M)[1]),
        bad=bad,
        cpu=cpu,
    )


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the wrk runs waited for so far
    return usage.ru_utime + usage.ru_stime


def _machine_busy_seconds() -> float:
    """CPU time all processes used since boot (every CPU's busy time, summed)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


# --- the app and its data -------------------------------------------------------------------------------


@contextmanager
def app_server(
    database_url: str, workdir: Path, *, workers: int, **settings: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`accord serve` as the README runs it (scheduler off, like the other benchmarks); its run-time data,
    the static mirror included, under `workdir`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(
        ACCORD_DATABASE_URL=database_url, ACCORD_SECRET_KEY="bench", ACCORD_RUN_SCHEDULER="false",
        ACCORD_DATA_DIR=str(workdir / "var"), ACCORD_PUBLIC_MIRROR_DIR=str(workdir / "public"),
        ACCORD_MEMORANDA_DIR=str(workdir / "memoranda"), ACCORD_PDF_WARM_UP="false", **settings,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers), "--no-access-log"],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)  # noqa: S310 (loopback)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("accord serve exited") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(20)


def seed_users(database_url: str) -> list[str]:
    """Two communications officers (four eyes) and a coordinator; their e-mail addresses."""
    engine = create_db_engine(database_url)
    emails = ["pr1@example.test", "pr2@example.test", "coordinator@example.test"]
    roles = [Role.communications, Role.communications, Role.coordinator]
    with Session(write_engine(engine)) as session:
        password_hash = hash_password(PASSWORD)
        for n, (email, role) in enumerate(zip(emails, roles, strict=True)):
            session.add(User(email=email, full_name=f"Служител {n + 1}", roles=[role], password_hash=password_hash))
        session.commit()
    engine.dispose()
    return emails


PLACES = ["кв. „Изток“", "кв. „Мошино“", "с. Ярджиловци", "центъра на града", "кв. „Тева“", "с. Рударци"]
TOPICS = [  # title, what it is (for the body), category, urgency, severity, certainty, CAP category, response
    ("Спиране на водата в {place}", "спирането на водата", "service_status", "Expected", "Moderate", "Likely",
     "Health", "Prepare"),
    ("Пункт за питейна вода в {place}", "раздаването на питейна вода", "advisory", "Immediate", "Moderate",
     "Observed", "Health", "Prepare"),
    ("Евакуация на ниските части на {place}", "евакуацията", "alert", "Immediate", "Severe", "Observed", "Safety",
     "Evacuate"),
    ("Затворени улици в {place}", "затварянето на улиците", "service_status", "Expected", "Minor", "Observed",
     "Transport", "Avoid"),
    ("Прием на дарения за {place}", "приемът на дарения", "general", "Future", "Minor", "Likely", "Other", "Monitor"),
    ("Подслон за пострадалите от {place}", "осигуряването на подслон", "advisory", "Immediate", "Severe", "Observed",
     "Rescue", "Shelter"),
]  # fmt: skip
BODY = """Кризисният щаб на общината съобщава, че поради високото ниво на река Струма **{what}** засяга
{place} от {hour}:00 ч. до второ нареждане.

- Пунктове за информация: читалище „Христо Ботев“ и кметството, всеки ден от 8:00 до 20:00 ч.
- Телефон на щаба: 112 и 0800 11 {n:03d} (безплатен, денонощно).
- Доброволците на Българския червен кръст раздават вода и храна на нуждаещите се.

Молим гражданите да следят само официалните съобщения на общината и да не споделят непроверена
информация. Следващото съобщение ще бъде публикувано до {next_hour}:00 ч. Повече на
[сайта на общината](https://example.test/kriza/{n})."""
BODY_EN = """The municipality's crisis staff reports that, because the Struma river is high, **{what}**
affects {place} from {hour}:00 until further notice.

- Information points: the Hristo Botev community centre and the mayor's office, 8:00 to 20:00 daily.
- Crisis staff hotline: 112 and 0800 11 {n:03d} (free, day and night).

Please follow only the municipality's official updates and do not share what you cannot check."""
RUMOURS = [
    ("Водата от чешмите в целия град е отровена и не бива да се пие дори след преваряване.", "false"),
    ("Язовирът над града ще бъде източен довечера и ще залее центъра.", "misleading"),
    ("Общината раздава по 500 евро на всяко засегнато домакинство без документи.", "false"),
]


def seed_public(base_url: str, emails: list[str]) -> dict[str, int]:
    """Through the API, as officers would: emergencies, updates written by one officer and approved by
    the other, a correction, a retraction, rumours with verdicts and their published fact-checks."""
    with httpx.Client(base_url=base_url, timeout=60) as client:

        def auth(email: str) -> dict[str, str]:
            token = client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
            return {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}

        author, reviewer, coordinator = (auth(e) for e in emails)

        def call(method: str, path: str, headers: dict[str, str], json: dict | None = None) -> dict:
            response = client.request(method, path, headers=headers, json=json)
            assert response.status_code in (200, 201), (path, response.status_code, response.text[:400])
            return response.json()

        flood = call("POST", "/api/v1/emergencies", coordinator, {
            "title": "Наводнение по поречието на Струма", "kind": "flood", "area": "кв. „Изток“, кв. „Мошино“",
            "severity": "severe"})  # fmt: skip
        call("POST", "/api/v1/emergencies", coordinator, {
            "title": "Авария на водопровода", "kind": "industrial_accident", "area": "центъра на града",
            "severity": "moderate"})  # fmt: skip

        def publish(data: dict) -> int:
            bulletin = call("POST", "/api/v1/bulletins", author, data)
            call("POST", f"/api/v1/bulletins/{bulletin['id']}/submit", author)
            call("POST", f"/api/v1/bulletins/{bulletin['id']}/approve", reviewer)
            return bulletin["id"]

        ids = []
        for n in range(32):
            title, what, category, urgency, severity, certainty, cap_category, response = TOPICS[n % len(TOPICS)]
            place = PLACES[n % len(PLACES)]
            english = n % 6 == 5
            text = (BODY_EN if english else BODY).format(
                what=what if not english else "the water supply work",
                place=place,
                hour=8 + n % 12,
                next_hour=9 + n % 12,
                n=n,
            )
            ids.append(publish({
                "title": (f"Update {n + 1}: water supply in {place}" if english else title.format(place=place)),
                "body": text, "language": "en" if english else "bg", "emergency_id": flood["id"] if n % 3 else None,
                "category": category, "urgency": urgency, "severity": severity, "certainty": certainty,
                "cap_category": cap_category, "response_type": response, "area_desc": place,
                "instruction": "Пригответе запас от вода за 3 дни." if n % 4 == 0 else "",
            }))  # fmt: skip
        call("POST", f"/api/v1/bulletins/{ids[-1]}/corrections", author, {
            "body": "Коригирано: пунктът за вода работи до 22:00 ч., а не до 20:00 ч.",
            "reason": "Удължено работно време"})  # fmt: skip
        call("POST", f"/api/v1/bulletins/{ids[-2]}/retract", reviewer, {"reason": "Публикувано по грешка"})
        for n, (wording, finding) in enumerate(RUMOURS):
            rumour = call("POST", "/api/v1/rumours", author, {
                "wording": wording, "channel": "Facebook група „Новини от района“", "risk": "high",
                "url": f"https://example.test/posts/{n}"})  # fmt: skip
            call("POST", f"/api/v1/rumours/{rumour['id']}/verdict", author, {
                "verdict": finding, "evidence": "Лабораторен протокол и справка от ВиК.",
                "response": "Твърдението не е вярно: проверихме го с ВиК и Регионалната здравна инспекция."
            })  # fmt: skip
            answer = call("POST", f"/api/v1/rumours/{rumour['id']}/fact-check", author)
            call("POST", f"/api/v1/bulletins/{answer['id']}/submit", author)
            call("POST", f"/api/v1/bulletins/{answer['id']}/approve", reviewer)
    return {"updates": len(ids) + len(RUMOURS), "rumours": len(RUMOURS)}


# --- the run --------------------------------------------------------------------------------------------


def fetch(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, headers={"Accept-Encoding": "identity", **(headers or {})}, timeout=30)


def run(backend: str, workers: int) -> None:
    ensure_installed("nginx", "wrk")
    with tempfile.TemporaryDirectory(prefix="bench-public-") as tmp, fresh_database(backend, Path(tmp)) as url:
        workdir = Path(tmp)
        emails = seed_users(url)
        with app_server(url, workdir, workers=workers) as (app, app_proc):
            seeded = seed_public(app, emails)
            home = fetch(app + "/")
            assert home.status_code == 200 and "content-encoding" not in home.headers, home.headers
            mirror_dir = workdir / "public"
            mirrored = (mirror_dir / "index.html").read_bytes()
            static_dir = workdir / "static"
            static_dir.mkdir()
            (static_dir / "home.html").write_bytes(home.content)
            port_a, port_c = free_port(), free_port()
            baseline_site = f"server {{\n    listen 127.0.0.1:{port_a};\n    root {static_dir};\n{file_cache()}}}\n"
            readme_site = site_config(listen=f"127.0.0.1:{port_c}", mirror_dir=mirror_dir, app=app.split("//")[1])
            with nginx(workdir / "nginx", [baseline_site, readme_site], [port_a, port_c]) as nginx_proc:
                urls = {
                    "a": f"http://127.0.0.1:{port_a}/home.html",
                    "b": app + "/",
                    "c": f"http://127.0.0.1:{port_c}/",
                    "d": app + "/",
                }
                for key in "abc":
                    response = fetch(urls[key])
                    assert response.status_code == 200 and response.content == home.content, (key, response.headers)
                etag = home.headers["etag"]
                assert fetch(urls["d"], {"If-None-Match": etag}).status_code == 304
                watch = {"app": process_tree(app_proc.pid), "nginx": process_tree(nginx_proc.pid)}
                nginx_workers, app_workers = CPUS, workers
                runs = {  # name, server, its processes, request headers
                    "a": ("(a) nginx: static file, same bytes", "nginx", nginx_workers, []),
                    "b": ("(b) app: GET /", "app", app_workers, []),
                    "c": ("(c) nginx: the mirror, README conf", "nginx", nginx_workers, []),
                    "d": ("(d) app: If-None-Match -> 304", "app", app_workers, [f"If-None-Match: {etag}"]),
                }
                results: dict[str, list[Measured]] = {key: [] for key in runs}
                for key, (name, _server, _n, headers) in runs.items():  # warm each path (and the app's copy)
                    wrk(name, urls[key], headers=[IDENTITY, *headers], seconds=WARM_UP_SECONDS, watch={})
                for _round in range(ROUNDS):
                    for key, (name, server, processes, headers) in runs.items():
                        results[key].append(
                            wrk(
                                name, urls[key], headers=[IDENTITY, *headers], seconds=SECONDS, watch=watch,
                                server=server, processes=processes,
                            )
                        )  # fmt: skip
                nginx_version = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr
    setup = (
        f"`accord serve --workers {workers}` (uvicorn); nginx {nginx_version.strip().rsplit('/', 1)[-1]}"
        f" with worker_processes {CPUS}; wrk -t{CPUS} -c{CONNECTIONS} -d{SECONDS:g}s, {ROUNDS} rounds"
    )
    page = (
        f"home page {len(home.content) / 1024:.1f} KiB, identity encoding for all ({seeded['updates']} updates "
        f"published, one corrected, one retracted; {seeded['rumours']} fact-checks, 2 active emergencies); "
        "the mirror's index.html is "
        + ("the same bytes as the app's /" if mirrored == home.content else "NOT the same bytes as the app's /")
    )
    report(f"[{backend}] {setup}", page, {runs[key][0]: results[key] for key in runs})


def report(title: str, page: str, results: dict[str, list[Measured]]) -> None:
    """Each round's figures, each run's ratio to the (a) just before it, then the medians; and beside the
    measured ratios the ones the CPU costs give for an otherwise idle machine (shared machines vary)."""
    a_runs = next(iter(results.values()))
    b, c, d = list(results)[1:]
    print(f"\n{title}\n  {page}")
    print("  rate, ratio to (a), latency; CPU per request of the server and of wrk; CPUs other work took")
    for n, baseline in enumerate(a_runs):
        print(f"  round {n + 1}")
        for runs in results.values():
            print(runs[n].line(None if runs is a_runs else baseline))
    ratio = {name: statistics.median(m.rate / a.rate for m, a in zip(runs, a_runs, strict=True))
             for name, runs in results.items()}  # fmt: skip
    idle = {name: statistics.median(m.idle_rate for m in runs) for name, runs in results.items()}
    p99 = {name: statistics.median(m.p99 for m in runs) for name, runs in results.items()}
    print("  medians of the rounds                       measured                    were the machine idle")
    for name, runs in results.items():
        rate = statistics.median(m.rate for m in runs)
        print(
            f"  {name:<36} {rate:7.0f}/s  ratio {ratio[name]:5.3f}  p99 {p99[name]:6.1f} ms  "
            f"{idle[name]:7.0f}/s  ratio {idle[name] / idle[next(iter(idle))]:5.3f}"
        )
    first = next(iter(idle))
    app, mirror = (ratio[b], idle[b] / idle[first]), (ratio[c], idle[c] / idle[first])
    met = verdict(app[0] >= TARGET_APP_RATIO, app[1] >= TARGET_APP_RATIO)
    print(f"  (b) / (a) {app[0]:.3f} (idle {app[1]:.3f})   target >= {TARGET_APP_RATIO}: {met}")
    print(f"  (b) p99 {p99[b]:.1f} ms   target < {TARGET_APP_P99_MS:.0f} ms: {verdict(p99[b] < TARGET_APP_P99_MS)}")
    met = verdict(mirror[0] >= 1 - TARGET_MIRROR_GAP, mirror[1] >= 1 - TARGET_MIRROR_GAP)
    print(f"  (c) / (a) {mirror[0]:.3f} (idle {mirror[1]:.3f})   target: no more than 10% below (a): {met}")
    print(f"  (d) / (a) {ratio[d]:.3f}   (304: the same way through the app as (b), without the body)")
    name = title.split("]")[0].strip("[") if title.startswith("[") else title
    name = f"public ({name})"
    report_target(
        name, "app / ÷ nginx same bytes", f"{app[0]:.3f}", f">= {TARGET_APP_RATIO}", app[0] >= TARGET_APP_RATIO
    )
    report_target(name, "app / p99", f"{p99[b]:.1f} ms", f"< {TARGET_APP_P99_MS:.0f} ms", p99[b] < TARGET_APP_P99_MS)
    report_target(
        name, "mirror via nginx ÷ plain file", f"{mirror[0]:.3f}", f">= {1 - TARGET_MIRROR_GAP:.2f}",
        mirror[0] >= 1 - TARGET_MIRROR_GAP,
    )  # fmt: skip
    bad = sum(m.bad for runs in results.values() for m in runs)
    others = statistics.median(m.cpu["others"] for runs in results.values() for m in runs)
    print(f"  answers other than 2xx/3xx, and socket errors: {bad}")
    if others > 0.2:
        print(f"  NOTE: other work took a median {others:.2f} of the {CPUS} CPUs during the runs; the measured")
        print("  figures move with it, the CPU cost per request much less")


def verdict(measured: bool, idle: bool | None = None) -> str:
    text = "MET" if measured else "MISSED"
    if idle is not None and idle != measured:
        text += f" (were the machine idle: {'MET' if idle else 'MISSED'})"
    return text


if __name__ == "__main__":
    for argument in sys.argv[1:] or ["sqlite", "postgresql"]:
        backend, _, count = argument.partition(":")
        run(backend, int(count) if count else 1 if backend == "sqlite" else CPUS)
