"""/v1/settings/{moduleId}: read and change a module's settings; changes persist and reload the module."""

from __future__ import annotations

import asyncio
import os

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from pydantic import ValidationError

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.schemas import SettingsResponse, inference_summary
from edgewatch.daemon.modules.base import CapabilityModule
from edgewatch.daemon.services import ServicesDep
from edgewatch.daemon.redaction import MASK, is_secret_name, printable, redact


def _module(services: ServicesDep, module_id: str) -> CapabilityModule:
    modules = services.modules
    if module_id not in modules:
        raise ApiError(404, f"no module {printable(module_id, 64)!r}; this box has {', '.join(map(repr, modules))}")
    return modules[module_id]


def _response(services: ServicesDep, module: CapabilityModule, message: str = "") -> SettingsResponse:
    env = {k: MASK if is_secret_name(k) else redact(v) for k, v in os.environ.items() if k.startswith("EDGEWATCH_")}
    settings = module.settings.model_dump(mode="json")
    for name in module.secret_settings:
        value = settings.get(name)
        settings[name] = {k: MASK for k in value} if isinstance(value, dict) else MASK
    return SettingsResponse(success=True, moduleId=module.module_id, settings=settings,
                            environmentVariables=env, inference=inference_summary(services), message=message)


class SettingsController(Controller):
    path = "/v1/settings"
    tags = ["settings"]
    opt = {"scope": "admin"}

    @get("/{module_id:str}", summary="A module's current settings")
    async def read(self, services: ServicesDep, module_id: FromPath[str]) -> SettingsResponse:
        return _response(services, _module(services, module_id))

    @post("/{module_id:str}", status_code=200,
          summary="Change one setting (fields name, value) or several (JSON object); persisted, module reloaded")
    async def change(self, request: Request, services: ServicesDep, module_id: FromPath[str]) -> SettingsResponse:
        module = _module(services, module_id)
        fields_of = module.settings_model.model_fields
        form = await read_form(request, require_form_type=True)
        fields = dict(form.fields)
        if "name" in fields:
            if "value" not in fields:
                raise ApiError(400, f"setting {fields['name']!r} sent without a 'value' field")
            changes = {fields["name"]: fields["value"]}
        else:
            changes = {k: v for k, v in fields.items() if k in fields_of}
        fixed = sorted(k for k in changes if k in module.config_only)
        if fixed:
            raise ApiError(403, f"{fixed[0]} is set in the config file only (who may call the box is not changed "
                                "over the network): edit the config and reload the daemon")
        unknown = [k for k in changes if k not in fields_of]
        if not changes or unknown:
            raise ApiError(400, f"unknown setting {printable(unknown[0] if unknown else '(none sent)', 64)!r}; settings of "
                                f"{module.module_id}: {', '.join(fields_of)}")
        try:
            new = module.settings_model.model_validate(module.settings.model_dump() | changes)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ApiError(400, f"{'.'.join(map(str, err['loc']))}: {err['msg']} "
                                f"(got {printable(repr(err.get('input')), 64)})") from None
        module.check_settings(new)
        saved = services.settings_store.update(module.module_id,
                                                        new.model_dump(mode="json", include=set(changes)))
        await asyncio.to_thread(module.apply, new)
        return _response(services, module, f"saved {', '.join(sorted(saved))}; module reloaded")
