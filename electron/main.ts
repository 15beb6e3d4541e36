/**
 * Electron main: a hardened window and one generic IPC bridge to the console service.
 * All logic lives in electron/core (plain Node, tested without Electron).
 */
import { app, BrowserWindow, ipcMain, shell } from 'electron';
import path from 'node:path';
import { ConsoleService } from './core/console-service';
import { EVENT_CHANNELS } from '../shared/contract';

let win: BrowserWindow | undefined;
const service = new ConsoleService();

function createWindow(): void {
  win = new BrowserWindow({
    width: 1400,
    height: 900,
    title: 'Ferry',
    webPreferences: {
      preload: path.join(__dirname, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webviewTag: false,
    },
  });
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  win.webContents.on('will-navigate', (e) => e.preventDefault());
  void win.loadFile(path.join(__dirname, '..', 'renderer', 'index.html'));
}

ipcMain.handle('ferry:invoke', (event, channel: unknown, request: unknown) => {
  // Only our own window may call in.
  if (!win || event.sender !== win.webContents) {
    return { ok: false, error: { code: 'INVALID_REQUEST', message: 'unknown sender' } };
  }
  return service.invoke(String(channel), request);
});

for (const channel of EVENT_CHANNELS) {
  service.on(channel, (payload) => win?.webContents.send('ferry:event', channel, payload));
}

app.whenReady().then(createWindow);
app.on('window-all-closed', () => {
  void service.dispose().finally(() => app.quit());
});
