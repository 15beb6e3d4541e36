/**
 * `window.ferry`: the preload's API in Electron, a WebSocket bridge in the browser mode.
 * Nothing else in the renderer knows which one it talks to.
 */
import type { EventChannel, EventPayload, FerryApi, InvokeChannel, InvokeRequest, InvokeResponse } from '../../shared/contract';
import type { Result } from '../../shared/result';

declare global {
  interface Window {
    ferry?: FerryApi;
  }
}

type Pending = (r: Result<unknown>) => void;

export type BridgeState = 'connecting' | 'open' | 'closed';

class WebSocketBridge implements FerryApi {
  private ws: WebSocket | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<(p: unknown) => void>>();
  private queue: string[] = [];
  private retry = 500;
  readonly stateListeners = new Set<(s: BridgeState) => void>();

  constructor(private readonly url: string) {
    this.open();
  }

  private setState(s: BridgeState) {
    for (const l of this.stateListeners) l(s);
  }

  private open() {
    this.setState('connecting');
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      this.setState('open');
      for (const m of this.queue) ws.send(m);
      this.queue = [];
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data)) as { type: string; id?: number; result?: Result<unknown>; channel?: string; payload?: unknown; events?: { channel: string; payload: unknown }[] };
      if (msg.type === 'result' && typeof msg.id === 'number') {
        this.pending.get(msg.id)?.(msg.result!);
        this.pending.delete(msg.id);
      } else if (msg.type === 'event' && msg.channel) {
        this.deliver(msg.channel, msg.payload);
      } else if (msg.type === 'events' && Array.isArray(msg.events)) {
        // a batch (the server sends events that arrive within a few ms of one another together), in order
        for (const e of msg.events) this.deliver(e.channel, e.payload);
      }
    };
    ws.onclose = () => {
      this.setState('closed');
      for (const [, p] of this.pending) p({ ok: false, error: { code: 'TRANSPORT_CLOSED', message: 'connection to the Ferry server lost' } });
      this.pending.clear();
      setTimeout(() => this.open(), this.retry);
      this.retry = Math.min(this.retry * 2, 10_000);
    };
  }

  /** To every listener of the channel; one that throws does not keep the event (or the rest of its batch) from the others. */
  private deliver(channel: string, payload: unknown): void {
    for (const l of this.listeners.get(channel) ?? []) {
      try {
        l(payload);
      } catch (e) {
        console.error(`ferry: a ${channel} listener failed`, e);
      }
    }
  }

  invoke<C extends InvokeChannel>(channel: C, request: InvokeRequest<C>): Promise<Result<InvokeResponse<C>>> {
    const id = this.nextId++;
    const msg = JSON.stringify({ type: 'invoke', id, channel, request });
    return new Promise((resolve) => {
      this.pending.set(id, resolve as Pending);
      if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(msg);
      else this.queue.push(msg);
    });
  }

  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void {
    let set = this.listeners.get(channel);
    if (!set) this.listeners.set(channel, (set = new Set()));
    const l = listener as (p: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  }
}

let bridge: FerryApi | undefined;
let wsBridge: WebSocketBridge | undefined;

export function ferry(): FerryApi {
  if (bridge) return bridge;
  if (window.ferry) {
    bridge = window.ferry;
  } else {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    wsBridge = new WebSocketBridge(`${proto}://${location.host}/ws`);
    bridge = wsBridge;
  }
  return bridge;
}

export function onBridgeState(l: (s: BridgeState) => void): () => void {
  ferry();
  if (!wsBridge) {
    l('open');
    return () => {};
  }
  wsBridge.stateListeners.add(l);
  return () => wsBridge?.stateListeners.delete(l);
}
