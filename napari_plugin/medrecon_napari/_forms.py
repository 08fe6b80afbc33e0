"""Parameter forms generated from a component's factory signature (the one schema of the design)."""

from __future__ import annotations

from typing import Any


def parameter_form(spec) -> Any:
    """A magicgui Container with one widget per settable parameter of the component.

    Arrays and the parameters the host fills from the data (shape, measurement) are left out;
    a type magicgui has no widget for gets a text field read as a TOML value.
    """
    from magicgui.widgets import Container, LineEdit, create_widget

    from medrecon import CONTEXT_PARAMETERS

    widgets = []
    for p in spec.parameters:
        if p.is_array or p.name in CONTEXT_PARAMETERS:
            continue
        default = None if p.required else p.default
        # Spin boxes stop at 999 and round to two decimals: ints get the full range, floats a text
        # field read exactly (steps = 1000 and tol = 1e-6 must both be expressible).
        options = {"min": -(2**31), "max": 2**31 - 1} if p.annotation is int else {}
        try:
            if p.annotation is float or _is_union(p.annotation):
                raise TypeError("floats and optional values are edited as text (empty: the default)")
            widget = create_widget(
                value=default, annotation=p.annotation, name=p.name, label=p.name, options=options
            )
        except Exception:  # floats, unions: a text field holding a TOML value
            widget = LineEdit(value="" if default is None else repr(default), name=p.name, label=p.name)
            widget.tooltip = f"{p.type_name} (a TOML value, e.g. [0, 90])"
        widgets.append(widget)
    return Container(widgets=widgets, labels=True)


def form_values(form, spec) -> dict[str, Any]:
    """The form's values that differ from the factory defaults (text fields parsed as TOML)."""
    from magicgui.widgets import LineEdit

    from medrecon import parse_value

    defaults = {p.name: None if p.required else p.default for p in spec.parameters}
    out = {}
    for widget in form:
        value = widget.value
        if isinstance(widget, LineEdit):
            if value == "":
                continue
            value = parse_value(value)
        if value != defaults.get(widget.name):
            out[widget.name] = list(value) if isinstance(value, tuple) else value
    return out


def set_form_values(form, values: dict[str, Any]) -> None:
    """Put recipe values into a form (text fields get TOML literals); unknown keys are an error."""
    from magicgui.widgets import LineEdit

    from medrecon import InputError, toml_value

    widgets = {w.name: w for w in form}
    for key, value in values.items():
        if key not in widgets:
            raise InputError(f"the recipe sets '{key}', which this component has no field for")
        widget = widgets[key]
        widget.value = toml_value(value) if isinstance(widget, LineEdit) else value


def _is_union(annotation: Any) -> bool:
    import types
    import typing

    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
