// A box's page in the dashboard (#/boxes/{id}): its state, its background processes (their
// logs, kill), its preview ports (close) and a terminal, drawn with xterm.js (vendor/xterm/,
// pinned) over the PTY WebSocket. The page's own script hands over its helpers (init) and
// opens and closes the page as the address changes. Whatever a box sends is data: it goes
// into the page as text (textContent, never markup) and into the terminal as bytes.
"use strict";

window.BurrowBox = (() => {
  const POLL_MS = 2000;        // the box's record: a read of the registry, no activity
  const LISTS_POLL_MS = 5000;  // processes and ports (a processes call is activity for the box)
  const LOG_PIECE = 65536;     // the most of each stream one logs call returns
  const LOG_PIECES = 40;       // catching up from offset 0: the box keeps 1-2 MiB a stream
  const LOG_SHOWN = 16384;     // the newest characters of each stream shown
  // The PTY's close codes (4400-4429) and what the operator reads beside their reason.
  const REFUSED = { 4400: "refused", 4401: "not authorised", 4403: "forbidden",
                    4404: "not found", 4429: "too many terminals" };
  const CAN_FREEZE = new Set(["running", "paused"]);
  const CAN_WAKE = new Set(["paused", "frozen", "archived", "failed"]);
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  let ui = null;  // the page's helpers: api, el, reconcile, cells, stateBadge, formats
  let current = null;  // the open page: {id, box, timer, listsTimer, logs}
  const terminal = { xterm: null, fit: null, session: null, observer: null };
  const encoder = new TextEncoder();

  function init(helpers) { ui = helpers; wire(); }

  function boxPath(suffix) { return `/v1/boxes/${enc(current.id)}${suffix || ""}`; }

  function setNote(id, text, kind) {
    const node = $(id);
    node.textContent = text || "";
    node.dataset.kind = kind || "";
    node.hidden = !text;
  }

  // --- the page ---------------------------------------------------------------------------

  function open(id) {
    if (current && current.id === id) return;
    close();
    current = { id, box: null, timer: null, listsTimer: null, logs: null, gone: false };
    $("box-id").textContent = id;
    for (const name of ["state", "tenant", "name", "runtime", "network", "created", "idle",
                        "memory", "disk"]) {
      $(`box-${name}`).textContent = "–";
    }
    $("box-processes").tBodies[0].replaceChildren();
    $("box-ports").tBodies[0].replaceChildren();
    setNote("box-processes-note", "");
    setNote("box-ports-note", "");
    setNote("box-note", "");
    closeLogs();
    resetTerminal();
    $("box-page").hidden = false;
    window.scrollTo(0, 0);
    tick();  // its first answer lists the processes and ports
    current.listsTimer = setTimeout(listsTick, LISTS_POLL_MS);
  }

  function close() {
    if (!current) return;
    clearTimeout(current.timer);
    clearTimeout(current.listsTimer);
    closeLogs();
    disconnect();
    current = null;
    $("box-page").hidden = true;
  }

  function isOpen() { return current !== null; }

  async function tick() {
    const page = current;
    if (!page || page.gone) return;
    if (!document.hidden) await refreshBox(page);
    if (current === page && !page.gone) page.timer = setTimeout(tick, POLL_MS);
  }

  async function listsTick() {
    const page = current;
    if (!page || page.gone) return;
    if (!document.hidden) await refreshLists(page);
    if (current === page && !page.gone) page.listsTimer = setTimeout(listsTick, LISTS_POLL_MS);
  }

  async function refreshBox(page, listsOnWake = true) {
    let box;
    try {
      box = await ui.api("GET", `/v1/boxes/${enc(page.id)}`);
    } catch (err) {
      if (current !== page || err.status === 401) return;
      if (err.status === 404) {
        page.gone = true;
        setNote("box-note", `There is no box ${page.id} (deleted?).`, "error");
      } else {
        setNote("box-note", `Could not read the box: ${err.message}`, "error");
      }
      return;
    }
    if (current !== page) return;
    const first = page.box === null, wasRunning = !first && page.box.state === "running";
    page.box = box;
    renderBox(box);
    if (listsOnWake && (first || (box.state === "running" && !wasRunning))) {
      refreshLists(page);
    }
  }

  function renderBox(box) {
    $("box-state").replaceChildren(ui.stateBadge(box.state));
    if (box.reason) $("box-state").append(" ", ui.el("span", { className: "sub" }, box.reason));
    $("box-page").dataset.state = box.state;
    $("box-tenant").textContent = box.tenant || "–";
    $("box-name").textContent = box.name || "–";
    $("box-runtime").textContent = box.runtime;
    $("box-network").textContent = box.network;
    $("box-created").textContent = ui.when(box.created_at);
    $("box-idle").textContent = ui.duration(box.idle_s);
    $("box-memory").textContent = ui.bytes(box.memory_bytes);
    $("box-disk").textContent = ui.bytes(box.disk_bytes);
    const busy = current.busy === true;
    $("box-freeze").disabled = busy || !CAN_FREEZE.has(box.state);
    $("box-wake").disabled = busy || !CAN_WAKE.has(box.state);
    setNote("box-note", "");
  }

  async function boxAction(action) {
    const page = current;
    if (!page || page.busy) return;
    page.busy = true;
    $("box-freeze").disabled = $("box-wake").disabled = true;
    setNote("box-note", action === "wake" ? "Waking…" : "Freezing…", "info");
    try {
      page.box = await ui.api("POST", `/v1/boxes/${enc(page.id)}/${action}`);
      page.busy = false;
      if (current === page) { renderBox(page.box); refreshLists(page); }
    } catch (err) {
      page.busy = false;
      if (current === page && err.status !== 401) {
        setNote("box-note", `Could not ${action} the box: ${err.message}`, "error");
      }
    }
  }

  // --- processes and ports ----------------------------------------------------------------

  async function refreshLists(page) {
    await Promise.all([refreshProcesses(page), refreshPorts(page)]);
  }

  async function refreshProcesses(page) {
    // Listing a frozen box's processes would wake it: only a running box's are asked for,
    // as its record says just before (a freeze from elsewhere is seen within a round trip).
    await refreshBox(page, false);
    if (current !== page) return;
    if (!page.box || page.box.state !== "running") {
      if (page.box) {
        renderProcesses([], `The box is ${page.box.state}: its processes show while it runs.`);
      }
      return;
    }
    try {
      const processes = await ui.api("GET", `/v1/boxes/${enc(page.id)}/processes`);
      if (current === page) renderProcesses(processes, "No background processes.");
    } catch (err) {
      if (current === page && err.status !== 401) {
        setNote("box-processes-note", `Could not list the processes: ${err.message}`, "error");
      }
    }
  }

  function commandText(command) {
    // an argv list is shown as its words; either way, as text
    return Array.isArray(command) ? command.map(String).join(" ") : String(command);
  }

  const PROCESS_COLS = ["id", "command", "state", "pid", "restarts", "exit", "started",
                        "actions"];

  // Rows are updated in place, keyed by id (the page's reconcile), so a button under the
  // pointer is not swapped out by a refresh.
  function renderProcesses(processes, emptyText) {
    setNote("box-processes-note", "");
    ui.reconcile($("box-processes").tBodies[0], processes, (p) => p.id, (p) => {
      const row = ui.el("tr", { "data-process-id": p.id });
      for (const name of PROCESS_COLS) {
        const cls = ["pid", "restarts", "exit"].includes(name) ? "num"
          : (name === "id" ? "id" : (name === "actions" ? "actions" : ""));
        row.append(ui.el("td", { "data-col": name, className: cls }));
      }
      row.lastChild.append(
        ui.el("button", { type: "button", "data-action": "logs", "data-process-id": p.id },
              "Logs"),
        ui.el("button", { type: "button", "data-action": "kill", "data-process-id": p.id,
                          className: "danger" }, "Kill"));
      return row;
    }, (row, p) => {
      const cell = ui.cells(row, PROCESS_COLS);
      row.dataset.state = p.state;
      cell.id.textContent = p.id;
      cell.command.textContent = commandText(p.command);
      cell.command.title = `in ${p.cwd}, restart ${p.restart}`;
      cell.state.replaceChildren(ui.stateBadge(p.state));
      if (p.error) cell.state.append(" ", ui.el("span", { className: "sub" }, p.error));
      cell.pid.textContent = p.pid === null ? "–" : String(p.pid);
      cell.restarts.textContent = String(p.restarts);
      cell.exit.textContent = p.exit_code === null ? "–" : String(p.exit_code);
      cell.started.textContent = p.started_at ? ui.when(p.started_at) : "–";
    }, emptyText, PROCESS_COLS.length);
  }

  async function refreshPorts(page) {
    try {
      const ports = await ui.api("GET", `/v1/boxes/${enc(page.id)}/ports`);
      if (current === page) renderPorts(ports);
    } catch (err) {
      if (current !== page || err.status === 401) return;
      $("box-ports").tBodies[0].replaceChildren();
      // 503: this server serves no previews (its message says which setting turns them on)
      setNote("box-ports-note", err.status === 503 ? err.message
        : `Could not list the ports: ${err.message}`, err.status === 503 ? "info" : "error");
    }
  }

  const PORT_COLS = ["port", "auth", "url", "created", "actions"];

  function renderPorts(ports) {
    setNote("box-ports-note", "");
    ports = [...ports].sort((a, b) => a.port - b.port);
    ui.reconcile($("box-ports").tBodies[0], ports, (p) => String(p.port), (p) => {
      const row = ui.el("tr", { "data-port": String(p.port) });
      for (const name of PORT_COLS) {
        row.append(ui.el("td", { "data-col": name, className: name === "port" ? "num"
          : (name === "actions" ? "actions" : "") }));
      }
      row.lastChild.append(ui.el("button", { type: "button", "data-action": "close-port",
                                             "data-port": String(p.port),
                                             className: "danger" }, "Close"));
      return row;
    }, (row, p) => {
      const cell = ui.cells(row, PORT_COLS);
      cell.port.textContent = String(p.port);
      cell.auth.textContent = p.auth === "basic" ? `basic, user ${p.username || "burrow"}`
        : p.auth;
      // The gateway builds the URL: a link only to http(s), opened apart from this page
      // (and made again only when it changes: the element stays under the pointer).
      if (cell.url.dataset.url !== p.url) {
        cell.url.dataset.url = p.url;
        cell.url.replaceChildren(/^https?:\/\//.test(p.url)
          ? ui.el("a", { href: p.url, target: "_blank", rel: "noopener noreferrer" }, p.url)
          : p.url);
      }
      cell.created.textContent = ui.when(p.created_at);
    }, "No open ports.", PORT_COLS.length);
  }

  async function killProcess(processId) {
    const page = current;
    if (!confirm(`Kill process ${processId}? Its record and logs are gone too.`)) return;
    try {
      await ui.api("DELETE", `/v1/boxes/${enc(page.id)}/processes/${enc(processId)}`);
      if (current !== page) return;
      if (page.logs && page.logs.id === processId) closeLogs();
      ui.showMessage(`Process ${processId} killed.`, "ok");
    } catch (err) {
      if (err.status !== 401) ui.showMessage(`Could not kill ${processId}: ${err.message}`,
                                             "error");
    }
    if (current === page) refreshProcesses(page);
  }

  async function closePort(port) {
    const page = current;
    if (!confirm(`Close port ${port}? Its URL, token and cookies stop working.`)) return;
    try {
      await ui.api("DELETE", `/v1/boxes/${enc(page.id)}/ports/${enc(port)}`);
      if (current === page) ui.showMessage(`Port ${port} closed.`, "ok");
    } catch (err) {
      if (err.status !== 401) ui.showMessage(`Could not close port ${port}: ${err.message}`,
                                             "error");
    }
    if (current === page) refreshPorts(page);
  }

  // --- a process's logs: read from the start, then followed by polling from the offsets ----

  function showLogs(processId) {
    closeLogs();
    const logs = { id: processId, stdout: { offset: 0, text: "", dropped: false },
                   stderr: { offset: 0, text: "", dropped: false }, timer: null, first: true };
    current.logs = logs;
    $("process-logs-id").textContent = processId;
    $("process-logs-stdout").textContent = "";
    $("process-logs-stderr").textContent = "";
    setNote("process-logs-note", "loading…", "");
    $("process-logs").hidden = false;
    pollLogs(current, logs);
  }

  function closeLogs() {
    if (current && current.logs) {
      clearTimeout(current.logs.timer);
      current.logs = null;
    }
    $("process-logs").hidden = true;
  }

  function addLog(stream, piece) {
    if (piece.offset > stream.offset) stream.dropped = true;  // older output rotated away
    stream.text = (stream.text + piece.data).slice(-LOG_SHOWN);
    stream.offset = piece.next_offset;
    return piece.data.length > 0;
  }

  async function pollLogs(page, logs) {
    try {
      for (let i = 0; i < (logs.first ? LOG_PIECES : 1); i += 1) {
        const query = new URLSearchParams({ stdout_offset: logs.stdout.offset,
                                            stderr_offset: logs.stderr.offset,
                                            limit: LOG_PIECE });
        const answer = await ui.api("GET", `/v1/boxes/${enc(page.id)}/processes/` +
                                           `${enc(logs.id)}/logs?${query}`);
        if (current !== page || page.logs !== logs) return;
        const out = addLog(logs.stdout, answer.stdout);
        const err = addLog(logs.stderr, answer.stderr);
        if (!out && !err) break;
      }
      logs.first = false;
      $("process-logs-stdout").textContent = logs.stdout.text;
      $("process-logs-stderr").textContent = logs.stderr.text;
      const dropped = logs.stdout.dropped || logs.stderr.dropped;
      setNote("process-logs-note", `the newest ${LOG_SHOWN / 1024} KiB of each stream` +
              (dropped ? "; the box dropped older output" : ""), "");
    } catch (err) {
      if (current !== page || page.logs !== logs || err.status === 401) return;
      setNote("process-logs-note", `Could not read the logs: ${err.message}`, "error");
      if (err.status === 404) return;  // killed, or the box forgot it: nothing to follow
    }
    if (current === page && page.logs === logs) followLogs(page, logs);
  }

  function followLogs(page, logs) {
    logs.timer = setTimeout(() => {
      if (current !== page || page.logs !== logs) return;
      if (document.hidden) followLogs(page, logs); else pollLogs(page, logs);
    }, LISTS_POLL_MS);
  }

  // --- the terminal -----------------------------------------------------------------------
  // Protocol (GET /v1/boxes/{id}/pty, a WebSocket opened with a single-use ticket, since a
  // browser cannot set the dashboard's header on one): binary frames are the terminal's bytes
  // both ways; text frames are JSON: {"type":"resize","cols","rows"} from here (on open and
  // on every resize), {"type":"exit","code"} from the server before it closes with 1000.
  // Close codes 4400-4429 carry the reason the server refused or ended the terminal.

  function setTerminalStatus(text, kind) { setNote("terminal-status", text, kind); }

  function ensureTerminal() {
    if (terminal.xterm) return terminal.xterm;
    const xterm = new window.Terminal({
      cursorBlink: true, scrollback: 5000, fontSize: 13,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
      theme: { background: "#11161c", foreground: "#e6edf3" },
    });
    terminal.fit = new window.FitAddon.FitAddon();
    xterm.loadAddon(terminal.fit);
    xterm.open($("terminal"));
    // keystrokes (and pastes) go as UTF-8 bytes; onBinary's are bytes already (mouse reports)
    xterm.onData((data) => send(encoder.encode(data)));
    xterm.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    xterm.onResize(({ cols, rows }) => sendResize(cols, rows));
    terminal.observer = new ResizeObserver(() => fit());
    terminal.observer.observe($("terminal"));
    terminal.xterm = xterm;
    return xterm;
  }

  function fit() {
    if (!terminal.xterm || $("box-page").hidden) return;
    try { terminal.fit.fit(); } catch (_) { /* not laid out yet */ }
  }

  function send(bytes) {
    const session = terminal.session;
    if (session && session.ws.readyState === WebSocket.OPEN) session.ws.send(bytes);
  }

  function sendResize(cols, rows) {
    const session = terminal.session;
    if (session && session.ws.readyState === WebSocket.OPEN) {
      session.ws.send(JSON.stringify({ type: "resize", cols, rows }));
    }
  }

  function resetTerminal() {
    disconnect();
    if (terminal.xterm) terminal.xterm.reset();
    $("terminal-connect").textContent = "Open a shell";
    $("terminal-connect").disabled = false;
    setTerminalStatus("Not connected. A shell runs as the box's user, with its limits.", "");
  }

  function printable(text) {
    // a close reason goes into the terminal too: no control sequences of its own
    return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, " ");
  }

  function ended(session, event) {
    if (session.exit !== null) return [`The shell exited with code ${session.exit}.`, "ok"];
    const reason = printable(event.reason || "");
    if (event.code >= 4400 && event.code <= 4499) {
      const what = REFUSED[event.code] || "refused";
      return [`Terminal ${what} (${event.code}): ${reason || "no reason given"}`, "error"];
    }
    if (session.closing) return ["Disconnected.", ""];
    if (!session.opened) {
      return ["Could not connect the terminal: the gateway refused the connection " +
              `(${event.code}${reason ? `: ${reason}` : ""}).`, "error"];
    }
    return [`The terminal's connection ended (${event.code}${reason ? `: ${reason}` : ""}).`,
            event.code === 1000 ? "" : "error"];
  }

  async function connect() {
    const page = current;
    if (!page) return;
    disconnect();
    const button = $("terminal-connect");
    button.disabled = true;
    setTerminalStatus("Connecting…", "info");
    const xterm = ensureTerminal();
    xterm.reset();
    fit();
    let ticket;
    try {
      ({ ticket } = await ui.api("POST", `/v1/boxes/${enc(page.id)}/pty/tickets`));
    } catch (err) {
      if (current === page && err.status !== 401) {
        setTerminalStatus(`Could not open a shell: ${err.message}`, "error");
        button.disabled = false;
      }
      return;
    }
    if (current !== page) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ cols: xterm.cols, rows: xterm.rows, ticket });
    const ws = new WebSocket(`${scheme}//${location.host}/v1/boxes/${enc(page.id)}/pty?${query}`);
    ws.binaryType = "arraybuffer";
    const session = { ws, exit: null, opened: false, closing: false };
    terminal.session = session;
    ws.addEventListener("open", () => {
      if (terminal.session !== session) return;
      session.opened = true;
      sendResize(xterm.cols, xterm.rows);
      setTerminalStatus("Connected.", "ok");
      button.textContent = "Disconnect";
      button.disabled = false;
      xterm.focus();
    });
    ws.addEventListener("message", (event) => {
      if (terminal.session !== session) return;
      if (typeof event.data !== "string") {
        xterm.write(new Uint8Array(event.data));
        return;
      }
      let message = null;
      try { message = JSON.parse(event.data); } catch (_) { return; }
      if (message && message.type === "exit" && Number.isInteger(message.code)) {
        session.exit = message.code;
      }
    });
    ws.addEventListener("close", (event) => {
      if (terminal.session !== session) return;
      terminal.session = null;
      const [text, kind] = ended(session, event);
      setTerminalStatus(text, kind);
      xterm.write(`\r\n\x1b[2m[${printable(text)}]\x1b[0m\r\n`);
      button.textContent = "Open a shell";
      button.disabled = false;
    });
  }

  function disconnect() {
    const session = terminal.session;
    if (!session) return;
    session.closing = true;
    terminal.session = null;
    session.ws.close(1000);
    if (current) {
      setTerminalStatus("Disconnected.", "");
      $("terminal-connect").textContent = "Open a shell";
      $("terminal-connect").disabled = false;
    }
  }

  // --- wiring -----------------------------------------------------------------------------

  function wire() {
    $("box-freeze").addEventListener("click", () => boxAction("freeze"));
    $("box-wake").addEventListener("click", () => boxAction("wake"));
    $("box-processes").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || button.disabled || !current) return;
      if (button.dataset.action === "logs") showLogs(button.dataset.processId);
      if (button.dataset.action === "kill") killProcess(button.dataset.processId);
    });
    $("box-ports").addEventListener("click", (event) => {
      const button = event.target.closest('button[data-action="close-port"]');
      if (button && !button.disabled && current) closePort(button.dataset.port);
    });
    $("process-logs-close").addEventListener("click", closeLogs);
    $("terminal-connect").addEventListener("click", () => {
      if (terminal.session) disconnect(); else connect();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && current && !current.gone) {
        clearTimeout(current.timer); tick();
        clearTimeout(current.listsTimer); listsTick();
      }
    });
  }

  // `terminal()` is the xterm.js Terminal (tests read its buffer); null before a shell opened.
  return { init, open, close, isOpen, terminal: () => terminal.xterm };
})();
