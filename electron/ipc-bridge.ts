/**
 * The one place the Electron main process wires the contract to the console service. It
 * takes a structural stand-in for `ipcMain` (so it runs under the test runner without
 * Electron): every request's sender is checked, its channel and payload validated against
 * the contract, and the answer is always a Result; events go out on one channel.
 */
import { EVENT_CHANNELS, isInvokeChannel } from '../shared/contract';
import type { Result } from '../shared/result';

export const INVOKE_CHANNEL = 'ferry:invoke';
export const EVENT_CHANNEL = 'ferry:event';

/** The part of Electron's IpcMainInvokeEvent the bridge looks at. */
export interface InvokeEventLike {
  sender: unknown;
  senderFrame?: { url: string } | null;
}

export interface IpcMainLike {
  handle(channel: string, listener: (event: InvokeEventLike, ...args: unknown[]) => Promise<unknown> | unknown): void;
  removeHandler(channel: string): void;
}

export interface ServiceLike {
  invoke(channel: string, request: unknown): Promise<Result<unknown>>;
  on(channel: (typeof EVENT_CHANNELS)[number], listener: (payload: unknown) => void): () => void;
}

export interface BridgeOptions {
  /** The webContents allowed to call in (the app's own window). */
  isTrustedSender(sender: unknown): boolean;
  /** The frame URL must be the app's own page (file:// of the packaged renderer). */
  isTrustedUrl(url: string): boolean;
  /** Pushes an event to the renderer. */
  send(channel: string, payload: unknown): void;
}

export function installIpcBridge(ipcMain: IpcMainLike, service: ServiceLike, options: BridgeOptions): () => void {
  ipcMain.handle(INVOKE_CHANNEL, async (event, channel, request): Promise<Result<unknown>> => {
    if (!options.isTrustedSender(event.sender) || !event.senderFrame || !options.isTrustedUrl(event.senderFrame.url)) {
      return { ok: false, error: { code: 'INVALID_REQUEST', message: 'request from an untrusted sender refused' } };
    }
    if (!isInvokeChannel(channel)) {
      return { ok: false, error: { code: 'INVALID_REQUEST', message: `unknown channel ${JSON.stringify(channel)}` } };
    }
    // The service validates `request` against the channel's schema and never throws.
    return service.invoke(channel, request);
  });
  const offs = EVENT_CHANNELS.map((ch) => service.on(ch, (payload) => options.send(EVENT_CHANNEL, { channel: ch, payload })));
  return () => {
    ipcMain.removeHandler(INVOKE_CHANNEL);
    for (const off of offs) off();
  };
}
