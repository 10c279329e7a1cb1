"""Airflow plugin: the factory view, one page per registered model inside the Airflow UI.

- `fastapi_apps`: a FastAPI app mounted by the API server under `/factory`: server-rendered pages
  (`/factory/`, `/factory/models/<name>`), the same data as JSON (`/factory/api/models[/<name>]`), the
  Evidently reports and rollout records from S3 (`/factory/reports/<key>`) and the gate report / model card
  of a version from MLflow (`/factory/models/<name>/versions/<v>/gate-report|model-card`).
- `external_views`: a "Factory" entry on the UI's navigation bar that shows `/factory/` in the UI's frame
  (UI route `/plugin/factory`).

Airflow does not authenticate a plugin's app (a Starlette mount inherits none of the core API's dependencies),
so every route here depends on Airflow's own `get_user`: the JWT of the UI session (`_token` cookie) or a
bearer token, validated by the configured auth manager. A page asked for without a valid token redirects to
the auth manager's login page (and back); the JSON and report routes answer 401. The runs panel lists only
DAGs the user may read (`is_authorized_dag`).

Airflow imports every module of the plugins folder in every component (scheduler, workers, each task), so
this module imports only `AirflowPlugin` at the top; FastAPI, the fetching code and the view are imported
when the API server asks for the app.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures' annotations at run time, and the
# names they use (Request, the User dependency) are local to `create_app`, where string annotations cannot be resolved.
from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/factory"
UI_ROUTE = "factory"  # the view inside the UI: /plugin/factory
NO_STORE = {"Cache-Control": "no-store"}
# Reports come from files others wrote (Evidently's HTML carries scripts): they run sandboxed in an opaque
# origin, so nothing in them can act as the logged-in user on the Airflow API.
REPORT_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "sandbox allow-scripts allow-popups allow-downloads",
    "X-Content-Type-Options": "nosniff",
}


@cache
def create_app() -> Any:
    """The view's FastAPI app (built once, on the API server's first request for the plugins' apps)."""
    from collections.abc import Callable
    from typing import Annotated

    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    bearer = HTTPBearer(auto_error=False)

    async def current_user(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Any:
        """The user of the UI session cookie or bearer token, as Airflow's own API authenticates it."""
        from airflow.api_fastapi.core_api.security import get_user

        return await get_user(request, None, credentials)

    User = Annotated[Any, Depends(current_user)]

    app = FastAPI(
        title="Factory view",
        dependencies=[Depends(current_user)],  # every route, including any added later
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def app_base(request: Request) -> str:
        return str(request.scope.get("root_path", URL_PREFIX)).rstrip("/")

    def wants_page(request: Request) -> bool:
        path = request.url.path.removeprefix(app_base(request))
        return not path.startswith(("/api/", "/reports/")) and "text/html" in request.headers.get("accept", "text/html")

    @app.exception_handler(HTTPException)
    async def unauthenticated(request: Request, error: HTTPException) -> Response:
        if error.status_code in (401, 403) and wants_page(request):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    def dag_reader(user: Any) -> Callable[[str], bool]:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

        manager = get_auth_manager()
        return lambda dag_id: manager.is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )

    def not_found(request: Request, message: str, *, page: bool) -> Response:
        if not page:
            return JSONResponse({"detail": message}, status_code=404, headers=NO_STORE)
        from pipelines.factory_view.render import render_message_page

        html = render_message_page("Not found", message, app_base=app_base(request), status=404)
        return HTMLResponse(html, status_code=404, headers=NO_STORE)

    # Sync handlers: FastAPI runs them in its thread pool, so slow sources never block the event loop.
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, user: User) -> Response:
        from factory_providers.view.collect import collect_index, view_paths

        from pipelines.factory_view.render import render_index_page

        view = collect_index(paths=view_paths(app_base(request)), can_read_dag=dag_reader(user))
        return HTMLResponse(render_index_page(view), headers=NO_STORE)

    @app.get("/models/{model}", response_class=HTMLResponse)
    def model_page(model: str, request: Request, user: User) -> Response:
        from factory_providers.view.collect import NotFoundError, collect_model_view, view_paths

        from pipelines.factory_view.render import render_model_page

        paths = view_paths(app_base(request))
        try:
            view = collect_model_view(model, paths=paths, can_read_dag=dag_reader(user))
        except NotFoundError as missing:
            return not_found(request, str(missing), page=True)
        return HTMLResponse(render_model_page(view, app_base=paths.app_base), headers=NO_STORE)

    @app.get("/api/models")
    def models_json(request: Request, user: User) -> Response:
        from factory_providers.view.collect import collect_index, view_paths

        view = collect_index(paths=view_paths(app_base(request)), can_read_dag=dag_reader(user))
        return Response(view.model_dump_json(), media_type="application/json", headers=NO_STORE)

    @app.get("/api/models/{model}")
    def model_json(model: str, request: Request, user: User) -> Response:
        from factory_providers.view.collect import NotFoundError, collect_model_view, view_paths

        try:
            view = collect_model_view(model, paths=view_paths(app_base(request)), can_read_dag=dag_reader(user))
        except NotFoundError as missing:
            return not_found(request, str(missing), page=False)
        return Response(view.model_dump_json(), media_type="application/json", headers=NO_STORE)

    @app.get("/models/{model}/versions/{version}/{name}")
    def version_artifact(model: str, version: str, name: str, request: Request) -> Response:
        from factory_providers.view.collect import NotFoundError, read_version_artifact

        try:
            body = read_version_artifact(model, version, name)
        except NotFoundError as missing:
            return not_found(request, str(missing), page=True)
        return Response(body, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS)

    @app.get("/reports/{key:path}")
    def report(key: str, request: Request) -> Response:
        from factory_providers.view.collect import NotFoundError, read_report

        try:
            body, media_type = read_report(key)
        except NotFoundError as missing:
            return not_found(request, str(missing), page=False)
        return Response(body, media_type=media_type, headers=REPORT_HEADERS)

    return app


class FactoryViewPlugin(AirflowPlugin):
    name = "factory_view"
    external_views = [  # noqa: RUF012 - AirflowPlugin's declared attribute
        {
            "name": "Factory",
            "href": "factory/",  # relative to the UI's base URL
            "destination": "nav",
            "url_route": UI_ROUTE,
            "nav_top_level": True,
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built when the API server asks (other components never import FastAPI for it)."""
        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Factory view"}]
