/**
 * Electron main: a hardened window, the menu, native dialogs and notifications, and the one
 * IPC bridge (ipc-bridge.ts) to the console service. All logic lives in electron/core (plain
 * Node, tested without Electron); nothing here needs a test to reach it.
 */
import { app, BrowserWindow, Menu, Notification, dialog, ipcMain, safeStorage, session, shell } from 'electron';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConsoleService } from './core/console-service';
import { labHosts, labDown } from './core/lab/local-lab';
import { installIpcBridge } from './ipc-bridge';
import { MAX_TIMELINE_BYTES } from './core/recorder/timeline-files';
import { DEFAULT_METRICS_PORT, startConsoleMetrics } from './core/metrics/metrics-http';
import type { MetricsServer } from './core/metrics/metrics-http';
import type { EventPayload } from '../shared/contract';

if (!app.requestSingleInstanceLock()) app.quit();

// Remembered passphrases are encrypted by the OS keychain (never stored in plain text). On
// Linux without a keyring Electron falls back to a hard-coded key ('basic_text'): treated
// as no encryption at all, so nothing is remembered there.
const secretCipher = {
  available: () => safeStorage.isEncryptionAvailable() && !(process.platform === 'linux' && safeStorage.getSelectedStorageBackend() === 'basic_text'),
  encrypt: (plain: string) => safeStorage.encryptString(plain),
  decrypt: (data: Buffer) => safeStorage.decryptString(data),
};
const service = new ConsoleService({ builtinHosts: () => labHosts(), secretCipher, recoverOnConnect: true });
let win: BrowserWindow | undefined;
const rendererIndex = path.join(__dirname, '..', 'renderer', 'index.html');
const rendererUrl = pathToFileURL(rendererIndex).href;
const stateFile = () => path.join(app.getPath('userData'), 'window.json');

function savedBounds(): Electron.Rectangle | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(), 'utf8')) as Electron.Rectangle;
  } catch {
    return undefined;
  }
}

function createWindow(): void {
  const bounds = savedBounds();
  win = new BrowserWindow({
    width: bounds?.width ?? 1400,
    height: bounds?.height ?? 900,
    ...(bounds ? { x: bounds.x, y: bounds.y } : {}),
    minWidth: 1280,
    minHeight: 720,
    title: 'Ferry',
    show: false,
    webPreferences: {
      // Reviewed (electronegativity PRELOAD_JS_CHECK): exposes only window.ferry {invoke, on}.
      preload: path.join(__dirname, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      webviewTag: false,
      spellcheck: false,
      // Middle-click must not open links in new windows (AUXCLICK_JS_CHECK).
      disableBlinkFeatures: 'Auxclick',
    },
  });
  win.once('ready-to-show', () => win?.show());
  win.on('close', () => {
    if (win) writeFileSync(stateFile(), JSON.stringify(win.getBounds()));
  });
  // Links open in the system browser (http/https only: OPEN_EXTERNAL_JS_CHECK reviewed);
  // the app itself never navigates away.
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https?:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  win.webContents.on('will-navigate', (e) => e.preventDefault());
  win.webContents.on('will-attach-webview', (e) => e.preventDefault());
  void win.loadFile(rendererIndex);
}

// Prometheus /metrics on 127.0.0.1: off unless the View menu or --metrics-port=N (or
// FERRY_METRICS_PORT) turns it on; the scrape token lives in <configDir>/metrics.token.
let metricsServer: (MetricsServer & { tokenFile: string }) | undefined;
const metricsPort = Number(app.commandLine.getSwitchValue('metrics-port') || process.env.FERRY_METRICS_PORT || 0) || undefined;
async function setMetrics(on: boolean): Promise<void> {
  if (!on) {
    await metricsServer?.close();
    metricsServer = undefined;
    return;
  }
  if (metricsServer) return;
  try {
    metricsServer = await startConsoleMetrics(service, metricsPort ?? DEFAULT_METRICS_PORT);
  } catch (e) {
    void dialog.showMessageBox({ type: 'error', message: 'Cannot serve metrics', detail: (e as Error).message });
  }
  buildMenu();
}

function buildMenu(): void {
  const event = <C extends 'ui:command' | 'ui:open-timeline'>(channel: C, payload: EventPayload<C>) => win?.webContents.send('ferry:event', { channel, payload });
  const command = (c: EventPayload<'ui:command'>['command']) => event('ui:command', { command: c });
  Menu.setApplicationMenu(Menu.buildFromTemplate([
    { label: 'File', submenu: [
      { label: 'Open timeline…', accelerator: 'CmdOrCtrl+O', click: async () => {
        const r = await dialog.showOpenDialog({ filters: [{ name: 'Ferry timeline', extensions: ['jsonl'] }, { name: 'Proxmox task log, guestperf report', extensions: ['log', 'txt', 'json'] }, { name: 'All files', extensions: ['*'] }], properties: ['openFile'] });
        const file = r.filePaths[0];
        if (r.canceled || !file) return;
        try {
          if (statSync(file).size > MAX_TIMELINE_BYTES) throw new Error(`larger than ${MAX_TIMELINE_BYTES / 1e6} MB; export it with 'ferry timeline --csv'`);
          event('ui:open-timeline', { name: path.basename(file), text: readFileSync(file, 'utf8') });
        } catch (e) {
          void dialog.showMessageBox({ type: 'error', message: `Cannot open ${file}`, detail: (e as Error).message });
        }
      } },
      // The renderer downloads the report; Electron's download asks where to save it.
      { label: 'Export report…', accelerator: 'CmdOrCtrl+E', click: () => command('export-report') },
      { type: 'separator' },
      { role: 'quit' },
    ] },
    { label: 'Lab', submenu: [
      { label: 'Start lab', click: () => command('start-lab') },
      { label: 'Stop lab', click: () => void service.invoke('lab:down', {}) },
      { label: 'Demo: precopy vs postcopy', click: () => command('run-demo') },
    ] },
    { label: 'View', submenu: [
      { label: 'Toggle theme', accelerator: 'T', click: () => command('toggle-theme') },
      { label: metricsServer ? `Serve Prometheus metrics (${metricsServer.url})` : 'Serve Prometheus metrics (127.0.0.1)', type: 'checkbox', checked: metricsServer !== undefined, click: (item) => void setMetrics(item.checked).then(buildMenu) },
      { role: 'reload' }, { role: 'toggleDevTools' },
    ] },
    { role: 'help', submenu: [{ label: 'About Ferry', click: () => void dialog.showMessageBox({ message: `Ferry ${app.getVersion()}`, detail: 'Visual live migration for QEMU/KVM.' }) }] },
  ]));
}

installIpcBridge(ipcMain, service, {
  isTrustedSender: (sender) => win !== undefined && sender === win.webContents,
  isTrustedUrl: (url) => url === rendererUrl,
  send: (channel, payload) => win?.webContents.send(channel, payload),
});

service.on('migration:phase', () => app.setBadgeCount(service.engine.active().length));
service.on('migration:ended', ({ final }) => {
  if (Notification.isSupported()) {
    new Notification({ title: `Migration ${String(final.outcome)}`, body: final.outcome === 'completed' ? `Downtime ${String(final.downtimeMs ?? '?')} ms` : String(final.reason ?? '') }).show();
  }
});

app.on('second-instance', () => {
  if (win?.isMinimized()) win.restore();
  win?.focus();
});

app.whenReady().then(() => {
  // No page of ours needs a permission (camera, notifications from the page, ...): deny all.
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, cb) => cb(false));
  // Exports (CSV, JSON, PNG, HTML report) are downloads from the renderer: ask where to save each.
  session.defaultSession.on('will-download', (_e, item) => {
    item.setSaveDialogOptions({ title: 'Export', defaultPath: path.join(app.getPath('documents'), item.getFilename()) });
  });
  buildMenu();
  createWindow();
  if (metricsPort) void setMetrics(true);
  void service.connectAll();
  void service.listenForControl('Ferry desktop app').catch((e: unknown) => console.error(`ferry: no control socket: ${String(e)}`));
});

app.on('window-all-closed', () => {
  const still = service.engine.active();
  if (still.length > 0) {
    dialog.showMessageBoxSync({ message: `${still.length} migration(s) still running`, detail: 'They belong to QEMU and go on; Ferry picks them up again when it next starts.' });
  }
  void Promise.resolve(metricsServer?.close())
    .then(() => service.dispose())
    .then(() => (service.labStartedHere ? labDown({ root: service.labRoot }) : undefined))
    .finally(() => app.quit());
});
