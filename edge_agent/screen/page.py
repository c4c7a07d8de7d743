"""One HTML page from a :class:`~edge_agent.screen.model.HomeScreen`. Pure.

Large type, dark text on a warm white, one calm accent colour and no red, yellow or green (see
the model's docstring for why). No framework: inline CSS and a few lines of script that reload
the page only when the agent answers, so a kiosk browser never lands on an error page while the
agent restarts; a ``<noscript>`` meta refresh covers browsers without script.
"""

from __future__ import annotations

from html import escape

from edge_agent.screen.model import HomeScreen, ReadingState, ScreenReading

_CSS = """
*{box-sizing:border-box}
html{font-size:clamp(18px,3.6vw,30px)}
body{margin:0;padding:1rem 1.2rem;background:#fbfaf6;color:#111;
 font-family:"DejaVu Sans","Noto Sans",Verdana,Arial,sans-serif;line-height:1.35}
header{display:flex;justify-content:space-between;gap:1rem;flex-wrap:wrap;color:#333;font-size:.9rem}
h1{font-size:1.9rem;margin:.6rem 0 .3rem;font-weight:700}
.detail{font-size:1.05rem;margin:0 0 .8rem}
.conn{font-size:.9rem;color:#333;margin:0 0 1rem}
.conn.off{font-weight:700}
h2{font-size:1.15rem;margin:1.2rem 0 .4rem;color:#1b365d}
ul{list-style:none;margin:0;padding:0}
li.m{border-top:2px solid #d8d4c8;padding:.55rem 0;display:grid;grid-template-columns:1fr auto;gap:.1rem 1rem}
li.m:last-child{border-bottom:2px solid #d8d4c8}
.what{font-size:1.1rem;font-weight:700}
.val{font-size:1.1rem;text-align:right;font-weight:700;white-space:nowrap}
.when{color:#333;font-size:.9rem}
.state{font-size:.95rem;text-align:right;color:#1b365d}
.state.done::before{content:"\\2713\\00a0"}
.who{grid-column:1/3;font-size:.85rem;color:#333;text-align:right}
li.r{font-size:1.05rem;padding:.3rem 0}
.more,.quiet{color:#333;font-size:.9rem}
footer{margin-top:1.4rem;color:#444;font-size:.8rem}
#message{border-left:6px solid #1b365d;background:#fff;padding:.4rem .8rem;margin:.6rem 0}
#message .msg{font-size:1.1rem;white-space:pre-wrap;overflow-wrap:anywhere;margin:.2rem 0}
#message .from{color:#333;font-size:.85rem;margin:0}
"""

_SCRIPT = """
(function(){
  function again(){setTimeout(tick,%d)}
  function tick(){
    fetch('/status.json',{cache:'no-store'}).then(function(r){
      if(r.ok){location.reload()}else{again()}
    }).catch(again);
  }
  again();
})();
"""

_DONE = {ReadingState.STORED, ReadingState.SEEN}


def _reading(r: ScreenReading) -> str:
    done = " done" if r.state in _DONE else ""
    who = f'<div class="who">{escape(r.detail)}</div>' if r.detail else ""
    return (
        f'<li class="m" data-state="{r.state.value}">'
        f'<div class="what">{escape(r.label)}</div><div class="val">{escape(r.value_text)}</div>'
        f'<div class="when">{escape(r.time_text)}</div>'
        f'<div class="state{done}">{escape(r.state_text)}</div>{who}</li>'
    )


def render(screen: HomeScreen, *, refresh_s: int = 15) -> str:
    parts = [
        '<!doctype html><html lang="da"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>Mine målinger</title>",
        f'<noscript><meta http-equiv="refresh" content="{refresh_s}"></noscript>',
        f"<style>{_CSS}</style></head><body>",
        f"<header><span>{escape(screen.date_text)}</span><span>{escape(screen.updated_text)}</span></header>",
        f'<main><h1 id="headline">{escape(screen.headline)}</h1>',
    ]
    if screen.detail:
        parts.append(f'<p class="detail">{escape(screen.detail)}</p>')
    parts.append(f'<p class="conn{"" if screen.connected else " off"}">{escape(screen.connection_text)}</p>')
    if screen.message is not None:
        m = screen.message
        parts.append('<section id="message"><h2>Besked fra dit team</h2>'
                     f'<p class="msg">{escape(m.text)}</p><p class="from">{escape(m.by)}, {escape(m.when_text)}</p>'
                     "</section>")
    if screen.reminders:
        parts.append('<h2>Planlagt i dag</h2><ul id="reminders">')
        parts += [f'<li class="r">{escape(m.text)}</li>' for m in screen.reminders]
        parts.append("</ul>")
    parts.append("<h2>Dagens målinger</h2>")
    if screen.today:
        parts.append('<ul id="today">' + "".join(_reading(r) for r in screen.today) + "</ul>")
        if screen.more_today:
            parts.append(f'<p class="more">og {screen.more_today} målinger mere i dag</p>')
    else:
        parts.append('<p class="quiet">Du har ikke målt noget i dag endnu.</p>')
        if screen.latest_before_today is not None:
            parts.append('<h2>Seneste måling</h2><ul id="earlier">' + _reading(screen.latest_before_today) + "</ul>")
    parts.append("</main><footer>Har du spørgsmål til dine målinger, så ring til sygeplejersken.</footer>")
    parts.append(f"<script>{_SCRIPT % (refresh_s * 1000)}</script></body></html>")
    return "".join(parts)
