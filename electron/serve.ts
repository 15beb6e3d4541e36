/**
 * Browser mode: the console service behind HTTP + WebSocket on 127.0.0.1 with a token.
 * Lands with the console issue; until then this says so.
 */
process.stdout.write('ferry serve: not yet — the browser-mode console arrives with the console issue (#6).\n');
export {};
