/**
 * Policies: plain objects the engine consults on every sample. Each decision goes through
 * the engine's controls (so QEMU's rules apply) and is recorded in the timeline with why.
 */
import type { MigrationPlan, MigrationSample, Policy } from '../../../shared/model/migration';
import type { Projection } from '../../../shared/analysis/projection';
import type { MigrationControl } from '../../../shared/contract';

/** The controls a policy may decide (the contract's, a subset). */
export type PolicyAction = Extract<MigrationControl, { action: 'postcopy' | 'stop-vm' | 'set-bandwidth' | 'set-downtime' }>;

export interface PolicyContext {
  sample: MigrationSample;
  projection: Projection | undefined;
  plan: MigrationPlan;
  /** Current settings (after earlier controls). */
  downtimeLimitMs: number;
  maxBandwidth: number | undefined;
  postcopyAllowed: boolean;
  postcopyStarted: boolean;
}

export interface PolicyDecision {
  act: PolicyAction;
  why: string;
}

export interface PolicyRunner {
  readonly name: string;
  /** At most one decision per sample; `undefined` = nothing to do. */
  decide(ctx: PolicyContext): PolicyDecision | undefined;
}

const fmtMB = (b: number) => `${(b / 1e6).toFixed(1)} MB/s`;

/** The plan's mode (postcopy / postcopy after N passes) is itself a policy. */
function modePolicy(plan: MigrationPlan): PolicyRunner | undefined {
  if (plan.mode === 'postcopy-after' && plan.postcopyAfterPasses !== undefined) {
    const n = plan.postcopyAfterPasses;
    return {
      name: `postcopy-after-${n}`,
      // QEMU's dirty-sync-count is 1 during the first pass: n passes are done once it exceeds n.
      decide: (c) => (!c.postcopyStarted && c.sample.phase === 'precopy' && (c.sample.pass ?? 0) > n ? { act: { action: 'postcopy' }, why: `${n} pass${n === 1 ? '' : 'es'} done (postcopy after ${n} passes)` } : undefined),
    };
  }
  if (plan.mode === 'postcopy') {
    return { name: 'postcopy', decide: (c) => (!c.postcopyStarted && c.sample.phase === 'precopy' && (c.sample.pass ?? 0) >= 2 ? { act: { action: 'postcopy' }, why: 'first pass done (postcopy mode)' } : undefined) };
  }
  return undefined;
}

export function makePolicies(plan: MigrationPlan): PolicyRunner[] {
  const out: PolicyRunner[] = [];
  const mode = modePolicy(plan);
  if (mode) out.push(mode);
  const p: Policy | undefined = plan.policy;
  if (!p || p.name === 'manual') return out;
  switch (p.name) {
    case 'postcopy-when-never': {
      let neverSince: number | undefined;
      out.push({
        name: p.name,
        decide: (c) => {
          if (c.postcopyStarted || c.sample.phase !== 'precopy' || (c.sample.pass ?? 0) < 2) return undefined;
          if (c.projection?.verdict !== 'never') {
            neverSince = undefined;
            return undefined;
          }
          neverSince ??= c.sample.t;
          // one second of "never" in a row, not a single noisy sample
          if (c.sample.t - neverSince < 1000) return undefined;
          const ratio = c.projection.ratio !== undefined ? ` (dirty/transfer ${c.projection.ratio.toFixed(2)})` : '';
          return { act: { action: 'postcopy' }, why: `projection says pre-copy will never converge${ratio}` };
        },
      });
      break;
    }
    case 'downtime-steps': {
      let lastPass = 0;
      out.push({
        name: p.name,
        decide: (c) => {
          const pass = c.sample.pass ?? 0;
          if (c.sample.phase !== 'precopy' || pass < 2 || pass - lastPass < p.everyPasses) return undefined;
          if (c.projection?.verdict === 'converging' || c.downtimeLimitMs >= p.ceilingMs) return undefined;
          lastPass = pass;
          const next = Math.min(p.ceilingMs, c.downtimeLimitMs + p.stepMs);
          return { act: { action: 'set-downtime', ms: next }, why: `pass ${pass}, still ${c.projection?.verdict ?? 'unknown'}: downtime limit ${c.downtimeLimitMs} → ${next} ms (ceiling ${p.ceilingMs})` };
        },
      });
      break;
    }
    case 'dynamic-rate': {
      let started = false;
      out.push({
        name: p.name,
        decide: (c) => {
          if (!['setup', 'precopy'].includes(c.sample.phase)) return undefined;
          if (!started) {
            started = true;
            if (c.maxBandwidth !== p.minBandwidth) return { act: { action: 'set-bandwidth', bytesPerSecond: p.minBandwidth }, why: `start at the minimum ${fmtMB(p.minBandwidth)}` };
            return undefined;
          }
          const dirty = c.projection?.dirtyRate;
          if (dirty === undefined || (c.sample.pass ?? 0) < 2) return undefined;
          const want = Math.min(p.maxBandwidth, Math.max(p.minBandwidth, dirty + p.marginBandwidth));
          const cur = c.maxBandwidth ?? p.maxBandwidth;
          if (Math.abs(want - cur) / cur < 0.1) return undefined;
          return { act: { action: 'set-bandwidth', bytesPerSecond: Math.round(want) }, why: `dirty rate ${fmtMB(dirty)} + margin ${fmtMB(p.marginBandwidth)} → ${fmtMB(want)} (max ${fmtMB(p.maxBandwidth)})` };
        },
      });
      break;
    }
    case 'deadline': {
      let stage = 0;
      out.push({
        name: p.name,
        decide: (c) => {
          if (c.sample.phase !== 'precopy') return undefined;
          const left = p.deadlineMs - c.sample.elapsedMs;
          const eta = c.projection?.etaMs;
          const late = c.projection?.verdict === 'never' || eta === undefined || eta > left;
          if (!late) return undefined;
          const frac = c.sample.elapsedMs / p.deadlineMs;
          if (stage === 0 && c.maxBandwidth !== undefined && c.maxBandwidth < 10e9 && frac >= 0.25) {
            stage = 1;
            return { act: { action: 'set-bandwidth', bytesPerSecond: 10e9 }, why: `${Math.round(left)} ms left, projected ${eta === undefined ? 'never' : `${Math.round(eta)} ms`}: bandwidth cap lifted` };
          }
          if (stage <= 1 && frac >= 0.45 && c.downtimeLimitMs < p.ceilingDowntimeMs) {
            stage = 2;
            return { act: { action: 'set-downtime', ms: p.ceilingDowntimeMs }, why: `still late with ${Math.round(left)} ms left: downtime limit raised to ${p.ceilingDowntimeMs} ms` };
          }
          if (stage <= 2 && frac >= 0.65) {
            stage = 3;
            return c.postcopyAllowed && !c.postcopyStarted
              ? { act: { action: 'postcopy' }, why: `still late with ${Math.round(left)} ms left: switching to postcopy` }
              : { act: { action: 'stop-vm' }, why: `still late with ${Math.round(left)} ms left: stopping the VM to finish offline` };
          }
          return undefined;
        },
      });
      break;
    }
  }
  return out;
}
