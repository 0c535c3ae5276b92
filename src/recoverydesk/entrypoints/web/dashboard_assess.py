"""The export upload: ``GET/POST /desk/assess`` runs the assessment job (``recoverydesk assess``)
on uploaded CSV exports, with an optional built-in profile and an optional mapping file, and
``GET /desk/assess/{run_id}`` shows its figures with links to ``report.html``, ``summary.json``,
``cases.csv`` and ``merchant.yaml``.

Who: leads and admins (they bring a merchant onto the desk) and finance (revenue at risk and
recoverable value are its figures); agents and risk get a 403. Each run is a folder under
``<temp>/recoverydesk-assess/<random token>``, bound to the user who uploaded it: another user
gets a 404. Runs are removed after a day. The body is read with its own limit
(``max_upload_bytes``, 200 MB by default) while it streams; the job runs in a worker thread
(at most two at once) so the desk stays responsive. A bad file gets the form again with the
one line the CLI would print.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import DeskError
from recoverydesk.entrypoints.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    LoggedIn,
    WebUser,
    csrf_token,
    desk_of,
)
from recoverydesk.entrypoints.web.dashboard_tiles import money, percent
from recoverydesk.entrypoints.web.templates import page
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.reports.assess import run_assessment
from recoverydesk.reports.assess.outputs import write_outputs
from recoverydesk.reports.assess.profiles_builtin import BUILTIN
from recoverydesk.services.merchants import Role
from recoverydesk.services.ports import AuditEntry

router = APIRouter(prefix="/assess")
ASSESS_ROLES = frozenset({Role.LEAD, Role.ADMIN, Role.FINANCE})
RUNS = Path(tempfile.gettempdir()) / "recoverydesk-assess"  # then one folder per desk
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
RUN_LIFETIME_SECONDS = 24 * 3600
MAX_FILES = 10
OUTPUTS = {  # name: (media type, shown in the browser rather than downloaded)
    "report.html": ("text/html; charset=utf-8", True),
    "summary.json": ("application/json", True),
    "cases.csv": ("text/csv; charset=utf-8", False),
    "merchant.yaml": ("application/yaml", False),
}
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


class UploadRefused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.0f} MB"


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body as it streams, refused once it passes ``limit`` bytes."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise UploadRefused(f"the upload is larger than {_megabytes(limit)}", 413)
        yield chunk


async def read_upload(request: Request, limit: int) -> FormData:
    """The multipart form, refused before reading when it says it is too large."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise UploadRefused(
            f"the upload ({_megabytes(int(length))}) is larger than {_megabytes(limit)}", 413
        )
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadRefused("send the form as multipart/form-data (choose files)", 415)
    stream = _limited(request, limit)
    parser = MultiPartParser(
        request.headers, stream, max_files=MAX_FILES + 1, max_fields=20, max_part_size=64 * 1024
    )
    try:
        return await parser.parse()
    except MultiPartException as error:
        raise UploadRefused(f"the upload is not a complete form ({error.message})", 400) from None


def _csrf_ok(request: Request, form: FormData) -> bool:
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    expected = csrf_token(request)
    if not isinstance(sent, str) or not expected:
        return False
    return secrets.compare_digest(sent.encode(), expected.encode())


# -- runs -------------------------------------------------------------------------------------


def runs_of(desk: Desk) -> Path:
    """This desk's runs (by its database: two desks on one machine never share a run)."""
    return RUNS / hashlib.sha256(desk.settings.database_url.encode()).hexdigest()[:16]


def run_folder(root: Path, run_id: str, user: WebUser) -> Path | None:
    """The run's folder if it exists and belongs to ``user`` (else None: a 404)."""
    if not RUN_ID.match(run_id):
        return None
    folder = root / run_id
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("user") != user.name or not (folder / "report" / "summary.json").is_file():
        return None
    return folder


def _recent_runs(root: Path, user: WebUser, limit: int = 10) -> list[dict[str, Any]]:
    found = []
    for record_file in root.glob("*/run.json") if root.is_dir() else []:
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        done = (record_file.parent / "report" / "summary.json").is_file()
        if record.get("user") == user.name and done:
            found.append({**record, "id": record_file.parent.name})
    return sorted(found, key=lambda r: str(r.get("at")), reverse=True)[:limit]


def _forget_old_runs(root: Path, now: float) -> None:
    for folder in root.iterdir() if root.is_dir() else []:
        try:
            if now - folder.stat().st_mtime > RUN_LIFETIME_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._")[:80] or "export.csv"
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        stem, dot, suffix = base.rpartition(".")
        candidate = f"{stem}-{number}.{suffix}" if dot else f"{base}-{number}"
    taken.add(candidate)
    return candidate


def _store(upload: UploadFile, where: Path) -> None:
    upload.file.seek(0)
    with where.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def _assess_run(
    folder: Path, exports: list[UploadFile], mapping: UploadFile | None, profile: str | None
) -> dict[str, Any]:
    """Store the uploads, run the job and write its outputs under the uploaded names."""
    inputs = folder / "input"
    inputs.mkdir(mode=0o700)
    taken: set[str] = set()
    names: dict[str, str] = {}
    files = []
    for upload in exports:
        stored = inputs / _safe_name(upload.filename or "export.csv", taken)
        _store(upload, stored)
        files.append(stored)
        names[str(stored)] = Path(upload.filename or stored.name).name
    mapped = None
    if mapping is not None:
        suffix = Path(mapping.filename or "").suffix.lower()
        mapped = folder / f"mapping{suffix if suffix in ('.json', '.yml') else '.yaml'}"
        _store(mapping, mapped)
        names[str(mapped)] = Path(mapping.filename or mapped.name).name
    try:
        result = run_assessment(files, out=folder / "report", mapping=mapped, profile=profile)
    except DeskError as error:
        raise UploadRefused(_renamed(error.message, names), 422) from None
    summary: dict[str, Any] = json.loads(_renamed(json.dumps(result.summary, default=str), names))
    write_outputs(folder / "report", summary, result.cases)
    return summary


def _renamed(text: str, names: dict[str, str]) -> str:
    """Where the desk stored a file becomes the name it was uploaded as."""
    for stored in sorted(names, key=len, reverse=True):
        text = text.replace(stored, names[stored])
    return text


# -- pages ------------------------------------------------------------------------------------


def _refused(request: Request, user: WebUser, status: int, message: str) -> Response:
    context = {"user": user, "csrf": csrf_token(request), "status": status, "message": message}
    return page(request, "error.html", context, status=status)


def _not_assessor(request: Request, user: WebUser) -> Response | None:
    if user.may(ASSESS_ROLES):
        return None
    message = f"The export assessment is for leads, admins and finance, not {user.role.value}."
    return _refused(request, user, 403, message)


def _form_page(
    request: Request,
    user: WebUser,
    *,
    error: str | None = None,
    status: int = 200,
    run: dict[str, Any] | None = None,
) -> Response:
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "profiles": sorted((name, p.title) for name, p in BUILTIN.items()),
        "limit": _megabytes(desk_of(request).settings.max_upload_bytes),
        "max_files": MAX_FILES,
        "error": error,
        "run": run,
        "runs": _recent_runs(runs_of(desk_of(request)), user),
    }
    return page(request, "assess.html", context, status=status)


@router.get("")
def assess_form(request: Request, user: LoggedIn) -> Response:
    return _not_assessor(request, user) or _form_page(request, user)


def _audit(request: Request, user: WebUser, run_id: str, detail: dict[str, Any]) -> None:
    desk = desk_of(request)
    with SqlUserStore(desk.engine) as users:
        target = f"assess:{run_id}"
        users.audit(AuditEntry(desk.clock.now(), user.name, "assess.run", None, target, detail))
        users.commit()


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """At most two assessments at once per desk process (each uses every core)."""
    state = request.app.state
    if getattr(state, "assess_limiter", None) is None:
        state.assess_limiter = anyio.CapacityLimiter(2)
    limiter: anyio.CapacityLimiter = state.assess_limiter
    return limiter


def _choices(form: FormData) -> tuple[list[UploadFile], UploadFile | None, str | None]:
    exports = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not exports:
        raise UploadRefused("choose at least one CSV export to assess", 422)
    if len(exports) > MAX_FILES:
        raise UploadRefused(f"at most {MAX_FILES} files at once", 422)
    mapping = form.get("mapping")
    chosen = mapping if isinstance(mapping, UploadFile) and mapping.filename else None
    profile = form.get("profile")
    return exports, chosen, (profile.strip() or None) if isinstance(profile, str) else None


async def _assess(request: Request, user: WebUser) -> Response:
    limit = desk_of(request).settings.max_upload_bytes
    form = await read_upload(request, limit)
    try:
        if not _csrf_ok(request, form):
            message = "the form expired or did not come from the desk (CSRF)"
            return _refused(request, user, 403, message)
        exports, mapping, profile = _choices(form)
        root = runs_of(desk_of(request))
        RUNS.mkdir(mode=0o700, exist_ok=True)
        root.mkdir(mode=0o700, exist_ok=True)
        await anyio.to_thread.run_sync(_forget_old_runs, root, time.time())
        run_id = secrets.token_urlsafe(18)
        folder = root / run_id
        folder.mkdir(mode=0o700)
        record = {
            "user": user.name,
            "at": desk_of(request).clock.now().isoformat(),
            "files": [Path(f.filename or "").name for f in exports],
            "profile": profile,
        }
        (folder / "run.json").write_text(json.dumps(record), encoding="utf-8")
        try:
            summary = await anyio.to_thread.run_sync(
                _assess_run, folder, exports, mapping, profile, limiter=_limiter(request)
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        await form.close()
    detail = {"files": record["files"], "profile": profile, "orders": _orders(summary)}
    _audit(request, user, run_id, detail)
    return RedirectResponse(f"/desk/assess/{run_id}", status_code=303)


def _orders(summary: dict[str, Any]) -> int:
    return int(summary.get("figures", {}).get("orders", 0))


@router.post("")
async def assess_upload(request: Request, user: LoggedIn) -> Response:
    """Run the assessment on the uploaded export(s); the form again with the reason if not."""
    refused = _not_assessor(request, user)
    if refused is not None:
        return refused
    try:
        return await _assess(request, user)
    except UploadRefused as error:
        _audit(request, user, "-", {"refused": error.message})
        return _form_page(request, user, error=error.message, status=error.status)


@router.get("/{run_id}")
def assess_result(request: Request, user: LoggedIn, run_id: str) -> Response:
    refused = _not_assessor(request, user)
    if refused is not None:
        return refused
    folder = run_folder(runs_of(desk_of(request)), run_id, user)
    if folder is None:
        return _refused(request, user, 404, f"No assessment run {run_id[:64]!r} of yours.")
    summary = json.loads((folder / "report" / "summary.json").read_text(encoding="utf-8"))
    run = {"id": run_id, "summary": summary, "outputs": OUTPUTS, "rows": figure_rows(summary)}
    return _form_page(request, user, run=run)


def figure_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The headline figures as (name, value, counts behind it), as the report gives them."""
    figures = summary.get("figures", {})
    rows = [("orders", str(figures.get("orders", 0)), "orders in the export")]
    for key, value in figures.items():
        if isinstance(value, dict) and {"value", "numerator", "denominator"} <= set(value):
            counts = f"{value['numerator']} / {value['denominator']}"
            rows.append((key.replace("_", " "), percent(value["value"]), counts))
    rows += [
        ("cases", str(figures.get("cases", 0)), "recovery opportunities (cases.csv)"),
        ("open at-risk orders", str(figures.get("open_at_risk_orders", 0)), ""),
        ("revenue at risk", money(figures.get("revenue_at_risk", [])), "open at-risk orders"),
        ("recoverable", money(figures.get("recoverable", [])), "value x loss likelihood"),
    ]
    value = figures.get("order_value")
    if value:
        shown = f"{value['median']} {value['currency']}"
        rows.append(("median order value", shown, f"p90 {value['p90']} {value['currency']}"))
    return rows


@router.get("/{run_id}/{name}")
def assess_output(request: Request, user: LoggedIn, run_id: str, name: str) -> Response:
    refused = _not_assessor(request, user)
    if refused is not None:
        return refused
    folder = run_folder(runs_of(desk_of(request)), run_id, user)
    if folder is None or name not in OUTPUTS:
        return _refused(request, user, 404, f"No {name[:40]!r} in an assessment run of yours.")
    media_type, inline = OUTPUTS[name]
    headers = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": REPORT_CSP,
    }
    return FileResponse(
        folder / "report" / name,
        media_type=media_type,
        headers=headers,
        filename=name,
        content_disposition_type="inline" if inline else "attachment",
    )
