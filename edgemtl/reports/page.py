"""The report.html page: a Jinja2 template (autoescaped) with inline CSS, and Markdown -> HTML for the sections that
are written as Markdown (tables through reports/markdown.py, prose). Nothing is fetched: no fonts, scripts or
images from the network."""
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import EdgemtlError

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;max-width:1180px;
 padding:1.2em 1.6em 3em}
h1{font-size:1.7em;margin:.2em 0 .1em}h2{font-size:1.35em;border-bottom:2px solid #ddd;padding-bottom:.15em;
 margin-top:1.8em}h3{font-size:1.1em;margin:1.3em 0 .4em}
nav{background:#f6f6f6;border:1px solid #e2e2e2;border-radius:6px;padding:.4em .9em;margin:.8em 0}
nav a{margin-right:1.1em;white-space:nowrap}a{color:#0b5cad}
.meta{color:#555}.note{color:#555;font-size:.93em}.warn{color:#a33;font-weight:600}.ok{color:#17692f;font-weight:600}
.table{overflow-x:auto;margin:.5em 0 .8em}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #d4d4d4;padding:3px 8px;vertical-align:top}
th{background:#f1f3f5;text-align:left}td{text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}
table.confusion td{min-width:2.2em;text-align:center}table.confusion th{text-align:center}
table.confusion th.pred{background:#e8eef7}table.confusion th.true{background:#f7ede8}
.grid{display:flex;flex-wrap:wrap;gap:1em 1.5em;align-items:flex-start}
details summary{cursor:pointer;color:#0b5cad}
figure{margin:.6em 0}figcaption{color:#555;font-size:.93em;max-width:900px}
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ meta }}</p>
<nav>{% for s in sections %}<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.anchor }}">
<h2>{{ s.title }}</h2>
{% for block in s.blocks %}{{ block }}
{% endfor %}
</section>
{% endfor %}
<p class="note">Written by edgemtl {{ version }} from the files of {{ run }}; self-contained (open it anywhere).</p>
</body></html>
"""


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)  # HTML strings (already safe: built by md() or html builders)

    def md(self, text: str) -> "Section":
        self.blocks.append(md(text))
        return self

    def html(self, text: str) -> "Section":
        self.blocks.append(_markup()(text))
        return self


def _markup():
    from markupsafe import Markup

    return Markup


def _libraries():
    try:
        import jinja2
        import markdown
    except ImportError as e:
        raise EdgemtlError(f"report.html needs Jinja2 and Markdown ({e.name} is missing): pip install "
                           f"'edgemtl[train]'") from None
    return jinja2, markdown


# a cell that is a number, maybe signed, with a unit or ratio after it: right-aligned
NUMBER_CELL = re.compile(r"<td>([+-]?[0-9][0-9,.]*(e[+-]?[0-9]+)?( ?(%|pt|x|x faster|x slower))?|[+-]?[0-9.]+ %)</td>")


def md(text: str):
    """Markdown (GitHub-style tables) -> HTML, each table wrapped so a wide one scrolls instead of overflowing, and
    number cells right-aligned. HTML inside the text is shown as text."""
    _, markdown = _libraries()
    # names from the data (tasks, classes, reasons) are text, never markup: Markdown would pass HTML through
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = markdown.markdown(text, extensions=["tables"], output_format="html")
    body = NUMBER_CELL.sub(lambda m: f'<td class="num">{m.group(1)}</td>', body)
    return _markup()(body.replace("<table>", '<div class="table"><table>').replace("</table>", "</table></div>"))


def render(title: str, meta: str, sections: Sequence[Section], run: str, version: str) -> str:
    jinja2, _ = _libraries()
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(title=title, meta=meta, sections=sections, run=run, version=version,
                                            style=_markup()(STYLE))
