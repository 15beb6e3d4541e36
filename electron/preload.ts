/**
 * The preload: exposes `window.ferry` (shared/contract.ts FerryApi) through contextBridge.
 * No logic: one generic invoke, one generic event subscription.
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { IpcRendererEvent } from 'electron';

const api = {
  invoke: (channel: string, request: unknown) => ipcRenderer.invoke('ferry:invoke', channel, request),
  on: (channel: string, listener: (payload: unknown) => void) => {
    const wrapped = (_e: IpcRendererEvent, ch: string, payload: unknown) => {
      if (ch === channel) listener(payload);
    };
    ipcRenderer.on('ferry:event', wrapped);
    return () => {
      ipcRenderer.removeListener('ferry:event', wrapped);
    };
  },
};

contextBridge.exposeInMainWorld('ferry', api);
