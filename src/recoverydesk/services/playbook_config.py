"""Playbooks as a merchant configures them (the ``playbooks:`` section of the merchant's file).

Each playbook has a ``version`` the merchant bumps when changing it, the ``categories`` of the
cases it drives, and its ``steps``. A step's ``when`` is a CEL condition over the variables a
triage rule sees (``case``, ``order``, ``event``, ``customer``, ``thresholds``; ``case.choice``
is the customer's latest decision answer) plus ``steps`` (``steps.<name>.done``,
``steps.<name>.attempts`` and the facts the step found, e.g.
``steps.validate_address.needs_customer``). The whole-file checks (``check_playbooks``) name
the path of a problem: ``playbooks.payment_recovery.steps.2.when``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Annotated, Any

import cel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from recoverydesk.domain.playbooks import Anchor, Mode, Playbook, Step
from recoverydesk.services.messages_compose import Choice

CODE = r"^[a-z][a-z0-9_]{0,59}$"
Code = Annotated[str, Field(pattern=CODE)]
STEP_VARIABLES = frozenset({"case", "order", "event", "customer", "thresholds", "steps"})
# The data a step may require (``requires``); ``order.ids.<kind>`` names any id of the order.
REQUIREMENTS = frozenset(
    {
        "order.customer_email",
        "order.customer_contact",  # an email or a helpdesk ticket
        "order.ticket",
        "order.tracking",
        "order.shipping_address",
        "order.placed_at",
        "order.ship_by",
        "order.lines",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def step_condition(text: str) -> str:
    """A condition that compiles as CEL and uses only the variables a step is given."""
    try:
        program = cel.compile(text)
    except ValueError as error:
        first = str(error).splitlines()[0] if str(error) else "syntax error"
        raise ValueError(f"not a valid CEL condition: {first}") from None
    unknown = set(program.variables()) - STEP_VARIABLES
    if unknown:
        known = ", ".join(sorted(STEP_VARIABLES))
        raise ValueError(f"unknown variable {sorted(unknown)[0]!r} (use {known})")
    return text


class StepSpec(_Strict):
    name: Code
    do: Code
    mode: Mode = Mode.AUTOMATIC
    when: str | None = None
    requires: tuple[str, ...] = ()
    anchor: Anchor = Anchor.CASE_OPENED
    after: timedelta = timedelta(0)
    every: timedelta | None = None
    times: Annotated[int, Field(ge=1, le=50)] = 1
    after_step: Code | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    label: Annotated[str, Field(max_length=200)] = ""
    checklist: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()

    @field_validator("when")
    @classmethod
    def _valid_cel(cls, text: str | None) -> str | None:
        return step_condition(text) if text is not None else None

    @field_validator("requires")
    @classmethod
    def _known_requirements(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if path not in REQUIREMENTS and not path.startswith("order.ids."):
                known = ", ".join(sorted(REQUIREMENTS | {"order.ids.<kind>"}))
                raise ValueError(f"{path!r} is not data a step can require ({known})")
        return paths

    @model_validator(mode="after")
    def _repeats(self) -> StepSpec:
        if self.times > 1 and (self.every is None or self.every <= timedelta(0)):
            raise ValueError("every: a step run more than once needs a positive 'every'")
        return self

    def as_step(self) -> Step:
        return Step(
            name=self.name,
            do=self.do,
            mode=self.mode,
            anchor=self.anchor,
            after=self.after,
            every=self.every,
            times=self.times,
            after_step=self.after_step,
            label=self.label,
        )


class PlaybookSpec(_Strict):
    version: Annotated[int, Field(ge=1)] = 1
    categories: tuple[Code, ...]
    steps: tuple[StepSpec, ...]

    @model_validator(mode="after")
    def _steps_named_once(self) -> PlaybookSpec:
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.name in seen:
                raise ValueError(f"steps.{index}.name: step {step.name!r} is defined twice")
            seen.add(step.name)
        for index, step in enumerate(self.steps):
            if step.after_step is not None and step.after_step not in seen:
                raise ValueError(f"steps.{index}.after_step: no step {step.after_step!r}")
        return self

    def as_playbook(self, name: str) -> Playbook:
        return Playbook(name, self.version, tuple(s.as_step() for s in self.steps))


_SPAN: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def window_of(params: Mapping[str, Any]) -> timedelta | None:
    """A decision step's ``window`` (ISO 8601, P2D), None when not given."""
    raw = params.get("window")
    return _SPAN.validate_python(raw) if raw is not None else None


def known_kinds() -> set[str]:
    """The step kinds a playbook may name: those registered."""
    from recoverydesk.services.playbooks import STEP_KINDS

    return set(STEP_KINDS)


def check_playbooks(
    playbooks: Mapping[str, PlaybookSpec],
    *,
    categories: Collection[str],
    templates: Collection[str],
) -> None:
    """The checks that need the rest of the file: known categories, kinds and templates, and
    at most one playbook per category. ``ValueError`` starts with the path of the problem."""
    kinds = known_kinds()
    driven: dict[str, str] = {}
    for name, spec in playbooks.items():
        where = f"playbooks.{name}"
        for index, category in enumerate(spec.categories):
            if category not in categories:
                raise ValueError(f"{where}.categories.{index}: unknown category {category!r}")
            if category in driven:
                raise ValueError(
                    f"{where}.categories.{index}: {category!r} is driven by "
                    f"playbook {driven[category]!r} already"
                )
            driven[category] = name
        for index, step in enumerate(spec.steps):
            _check_step(step, f"{where}.steps.{index}", kinds, templates)


def _check_step(step: StepSpec, where: str, kinds: set[str], templates: Collection[str]) -> None:
    if step.do not in kinds:
        raise ValueError(f"{where}.do: unknown kind {step.do!r} (use {', '.join(sorted(kinds))})")
    template = step.params.get("template")
    if template is not None and template not in templates:
        raise ValueError(f"{where}.params.template: no template {template!r}")
    if step.do in {"message", "decision"} and template is None:
        raise ValueError(f"{where}.params.template: a {step.do} step needs a template")
    if step.do == "command":
        for part in ("system", "action"):
            if not isinstance(step.params.get(part), str):
                raise ValueError(f"{where}.params.{part}: a command step needs its {part}")
    if step.do == "decision":
        choices, default = step.params.get("choices"), step.params.get("default")
        if not isinstance(choices, list) or not set(choices) <= {c.value for c in Choice}:
            known = ", ".join(c.value for c in Choice)
            raise ValueError(f"{where}.params.choices: a list of choices from {known}")
        if default not in choices:
            raise ValueError(f"{where}.params.default: must be one of the step's choices")
        try:
            window_of(step.params)
        except ValidationError:
            raise ValueError(f"{where}.params.window: an ISO 8601 duration (P2D)") from None
    if step.do == "check" and not step.checklist:
        raise ValueError(f"{where}.checklist: a check step lists what to verify")
