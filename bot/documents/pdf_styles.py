"""Computed CSS styles shared across documents, for a renderer that lays out thousands of invoices.

WeasyPrint computes the style of every element of every document: it matches the element against
each stylesheet, cascades the declarations and then, lazily, computes each property from the cascaded
value and the parent's style. Within one document it already shares one computed style between
elements that are equivalent — same parent style, same matching rules, same style attributes
(``weasyprint.css.StyleFor``). Our invoices are all made from the same templates with the same two
pre-parsed stylesheets, so the equivalent elements of the NEXT document get the very same styles too.
:class:`SharedStyleFor` keeps that sharing table for the renderer's lifetime instead of one document's:
the first invoice computes its styles, the following ones find most of theirs computed already (about
a quarter of the instructions of a render; PDFs byte for byte the same, which the tests check).

An element's style is taken from the table only when it is safe to: every rule it matched comes from
one of the renderer's own stylesheets (they live as long as the table, so the identities in the key
stay valid), its parent's style came from the table as well, and its style carries no anchor
(anchors are collected per document). Anything else — an inline ``<style>``, an ``id`` — is computed
for its document alone, exactly as WeasyPrint does.

This mirrors ``StyleFor.__init__`` of WeasyPrint 70 (``pyproject.toml`` pins the minor version).
"""

from __future__ import annotations

from math import inf
from typing import Any

#: Styles kept per table at most; a table over this is emptied (documents then start afresh).
MAX_SHARED_STYLES = 20_000

_installed = False


class StyleTable:
    """The shared styles of one renderer, and the stylesheets whose rules may key them."""

    def __init__(self, sheets: tuple[Any, ...]) -> None:
        self.sheet_ids = frozenset(id(s) for s in sheets)
        self.sheets = sheets  # kept alive: their identities are part of the keys
        self.styles: dict[tuple[Any, ...], Any] = {}
        self.hits = 0
        self.misses = 0


def _declarations_key(declarations: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """A content key for an element's own declarations (style attribute, ``lang``, presentational hints)."""
    if declarations is None:
        return None
    import tinycss2

    return tuple((d.lower_name, tinycss2.serialize(d.value), d.important) if hasattr(d, "lower_name")
                 else ("?", tinycss2.serialize([d]), False) for d in declarations)


def install() -> None:
    """Make ``weasyprint.css.StyleFor`` share styles for documents that carry a :class:`StyleTable`
    (``html.billbot_styles``); every other document is styled exactly as before. Idempotent."""
    global _installed  # noqa: PLW0603 - one patch per process
    if _installed:
        return
    from weasyprint import css as wcss  # lazy: WeasyPrint loads only in a process that renders

    base = wcss.StyleFor

    class SharedStyleFor(base):  # type: ignore[misc, valid-type]
        def __init__(self, html: Any, sheets: Any, presentational_hints: Any, font_config: Any,
                     target_collector: Any) -> None:
            table = getattr(html, "billbot_styles", None)
            if table is None:
                super().__init__(html, sheets, presentational_hints, font_config, target_collector)
                return
            _shared_init(self, table, html, sheets, presentational_hints, font_config, target_collector)

    wcss.StyleFor = SharedStyleFor
    _installed = True


# mirrors WeasyPrint 70's StyleFor.__init__ statement for statement, hence its size
def _shared_init(self: Any, table: StyleTable, html: Any, sheets: Any, presentational_hints: Any,  # noqa: C901, PLR0912, PLR0913, PLR0915, PLR0917
                 font_config: Any, target_collector: Any) -> None:
    """``StyleFor.__init__`` (WeasyPrint 70) with the equivalence table kept in ``table``."""
    from weasyprint.css import declaration_precedence, find_style_attributes, preprocess_declarations

    cascaded_styles: dict[tuple[Any, Any], dict[str, Any]] = {}
    computed_styles: dict[tuple[Any, Any], Any] = {}
    self._cascaded_styles = cascaded_styles
    self._computed_styles = computed_styles
    self.initial_page_sizes = {"box": None, "area": None}
    self._sheets = sheets
    self.font_config = font_config

    layer_order: Any = inf
    elements_declarations: dict[Any, tuple[Any, ...]] = {}
    for specificity, element, declarations, base_url in find_style_attributes(
            html.etree_element, presentational_hints, html.base_url):
        style = cascaded_styles.setdefault((element, None), {})
        elements_declarations[element] = tuple(declarations)
        for name, values, importance in preprocess_declarations(base_url, declarations):
            precedence = declaration_precedence("author", importance)
            weight = (precedence, layer_order, specificity)
            old_weight = style.get(name, (None, None))[1]
            if old_weight is None or old_weight <= weight:
                style[name] = values, weight

    if len(table.styles) > MAX_SHARED_STYLES:
        table.styles.clear()
    shared = table.styles
    local: dict[tuple[Any, ...], Any] = {}  # WeasyPrint's own per-document table, for the rest
    from_table: set[Any] = set()  # elements whose style is in the shared table
    for element in html.wrapper_element.iter_subtree():
        etree_element = element.etree_element
        parent = element.parent.etree_element if element.parent else None
        parent_id = id(computed_styles[parent, None]) if element.parent else None
        element_declarations = elements_declarations.get(etree_element)
        selectors_keys = []
        own_sheets_only = True
        for sheet, origin, sheet_specificity in sheets:
            for selector in sheet.matcher.match(element):
                specificity, _order, pseudo_type, (declarations, layer) = selector
                layer_order = inf if layer is None else sheet.layers.index(layer)
                selectors_keys.append((id(sheet), specificity, id(declarations), layer_order))
                if id(sheet) not in table.sheet_ids or pseudo_type is not None:
                    own_sheets_only = False
                specificity = sheet_specificity or specificity
                style = cascaded_styles.setdefault((etree_element, pseudo_type), {})
                for name, values, importance in declarations:
                    precedence = declaration_precedence(origin, importance)
                    weight = (precedence, layer_order, specificity)
                    old_weight = style.get(name, (None, None))[1]
                    if old_weight is None or old_weight <= weight:
                        style[name] = values, weight

        shareable = own_sheets_only and (parent is None or parent in from_table)
        if shareable:
            key = (parent_id, _declarations_key(element_declarations), tuple(selectors_keys))
            found = shared.get(key)
            if found is not None:
                computed_styles[etree_element, None] = found
                from_table.add(etree_element)
                table.hits += 1
                continue
            self.set_computed_styles(etree_element, root=html.etree_element, parent=parent,
                                     base_url=html.base_url, target_collector=target_collector)
            computed = computed_styles[etree_element, None]
            table.misses += 1
            if not computed["anchor"]:
                shared[key] = computed
                from_table.add(etree_element)
            continue
        local_key = (parent_id, element_declarations, tuple(selectors_keys))
        if local_key in local:
            computed_styles[etree_element, None] = local[local_key]
        else:
            self.set_computed_styles(etree_element, root=html.etree_element, parent=parent,
                                     base_url=html.base_url, target_collector=target_collector)
            local[local_key] = computed_styles[etree_element, None]

    for element, pseudo_type in cascaded_styles:
        if pseudo_type:
            self.set_computed_styles(element, pseudo_type=pseudo_type, root=html.etree_element, parent=element,
                                     base_url=html.base_url, target_collector=target_collector)
    self._cascaded_styles.clear()
