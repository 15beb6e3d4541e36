/**
 * The preload: exposes exactly `window.ferry` (shared/contract.ts FerryApi) through
 * contextBridge: one generic invoke, one generic event subscription. Never ipcRenderer.
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { IpcRendererEvent } from 'electron';

const INVOKE_CHANNEL = 'ferry:invoke';
const EVENT_CHANNEL = 'ferry:event';

const api = {
  invoke: (channel: string, request: unknown) => ipcRenderer.invoke(INVOKE_CHANNEL, channel, request),
  on: (channel: string, listener: (payload: unknown) => void) => {
    const wrapped = (_e: IpcRendererEvent, msg: { channel?: unknown; payload?: unknown }) => {
      if (msg && msg.channel === channel) listener(msg.payload);
    };
    ipcRenderer.on(EVENT_CHANNEL, wrapped);
    return () => {
      ipcRenderer.removeListener(EVENT_CHANNEL, wrapped);
    };
  },
};

contextBridge.exposeInMainWorld('ferry', api);
