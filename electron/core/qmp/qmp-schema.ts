/**
 * What a QEMU's QMP offers for migration, read from its own `query-qmp-schema` instead of
 * guessed from its version number. The schema hides most type names (they are numbers) but
 * keeps command, event, member and enum value names, so a walk from a command through its
 * argument or return type reaches every capability, parameter, status and field by name.
 *
 * What changed since QEMU 7.2 that Ferry must respect, all visible here: 9.1 removed the
 * `block` and `compress` capabilities, the `compress-*`/`block-incremental` parameters,
 * `migrate`'s `blk`/`inc` and `query-migrate`'s `disk`/`compression`; 8.1 added
 * `switchover-ack` and `dirty-limit`, 8.2 `avail-switchover-bandwidth`, 9.0 `mapped-ram`,
 * 9.1 the status `postcopy-recover-setup`, 10.2 `postcopy-device`.
 */
import { FerryException } from '../../../shared/errors';
import type { QmpClient } from './qmp-client';

/** One entry of `query-qmp-schema` (SchemaInfo), as much of it as Ferry reads. */
export interface SchemaEntity {
  name: string;
  'meta-type': string;
  'arg-type'?: string;
  'ret-type'?: string;
  'element-type'?: string;
  members?: { name: string; type?: string; features?: string[] }[];
  /** Enums up to 7.2 list plain values; later ones also give members with features. */
  values?: string[];
  variants?: { case: string; type: string }[];
  features?: string[];
}

/** The migration-related surface of one QEMU build. Plain arrays: it is cached and sent as JSON. */
export interface MigrationFeatures {
  /** `x.y.z` from the QMP greeting, when known. */
  version?: string;
  capabilities: string[];
  parameters: string[];
  statuses: string[];
  /** Top-level members of query-migrate's reply (MigrationInfo). */
  queryMigrateFields: string[];
  /** Members of its `ram` object (MigrationStats). */
  ramFields: string[];
  migrateArgs: string[];
  migrateIncomingArgs: string[];
  commands: string[];
  /** Capabilities and parameters marked deprecated or unstable in the schema. */
  deprecated: string[];
}

export class QmpSchema {
  private readonly byName = new Map<string, SchemaEntity>();

  constructor(entities: readonly SchemaEntity[]) {
    for (const e of entities) if (e && typeof e.name === 'string') this.byName.set(e.name, e);
  }

  entity(name: string): SchemaEntity | undefined {
    return this.byName.get(name);
  }

  hasCommand(name: string): boolean {
    return this.byName.get(name)?.['meta-type'] === 'command';
  }

  commands(): string[] {
    return [...this.byName.values()].filter((e) => e['meta-type'] === 'command').map((e) => e.name).sort();
  }

  /** The members of an object type (arrays are looked through). */
  membersOf(typeName: string | undefined): NonNullable<SchemaEntity['members']> {
    const t = this.resolve(typeName);
    if (!t) return [];
    const own = t.members ?? [];
    // A union's variants add their own members (a flat union's branches).
    const more = (t.variants ?? []).flatMap((v) => this.membersOf(v.type));
    return [...own, ...more];
  }

  /** Enum values of a type (arrays looked through), with the features each carries. */
  enumOf(typeName: string | undefined): { name: string; features: string[] }[] {
    const t = this.resolve(typeName);
    if (!t || t['meta-type'] !== 'enum') return [];
    if (t.members?.length) return t.members.map((m) => ({ name: m.name, features: m.features ?? [] }));
    return (t.values ?? []).map((name) => ({ name, features: [] }));
  }

  /** Walks member names from a type: `path(['query-migrate', 'ret'], 'status')`. */
  memberType(typeName: string | undefined, member: string): string | undefined {
    return this.membersOf(typeName).find((m) => m.name === member)?.type;
  }

  argType(command: string): string | undefined {
    return this.byName.get(command)?.['arg-type'];
  }

  retType(command: string): string | undefined {
    return this.byName.get(command)?.['ret-type'];
  }

  private resolve(typeName: string | undefined): SchemaEntity | undefined {
    let t = typeName === undefined ? undefined : this.byName.get(typeName);
    for (let i = 0; t && t['meta-type'] === 'array' && i < 4; i++) t = this.byName.get(t['element-type'] ?? '');
    return t;
  }
}

const names = (xs: { name: string }[]) => [...new Set(xs.map((x) => x.name))].sort();

/** Reads the migration surface out of a parsed schema. */
export function migrationFeatures(schema: QmpSchema, version?: string): MigrationFeatures {
  const capType = schema.memberType(schema.memberType(schema.argType('migrate-set-capabilities'), 'capabilities'), 'capability');
  const caps = schema.enumOf(capType);
  const paramMembers = schema.membersOf(schema.argType('migrate-set-parameters'));
  const info = schema.retType('query-migrate');
  const statuses = schema.enumOf(schema.memberType(info, 'status'));
  const deprecated = [
    ...caps.filter((c) => c.features.includes('deprecated')).map((c) => c.name),
    ...paramMembers.filter((m) => (m.features ?? []).includes('deprecated')).map((m) => m.name),
  ];
  const f: MigrationFeatures = {
    capabilities: names(caps),
    parameters: names(paramMembers),
    statuses: names(statuses),
    queryMigrateFields: names(schema.membersOf(info)),
    ramFields: names(schema.membersOf(schema.memberType(info, 'ram'))),
    migrateArgs: names(schema.membersOf(schema.argType('migrate'))),
    migrateIncomingArgs: names(schema.membersOf(schema.argType('migrate-incoming'))),
    commands: schema.commands(),
    deprecated: [...new Set(deprecated)].sort(),
  };
  if (version) f.version = version;
  return f;
}

export const has = (list: readonly string[], name: string) => list.includes(name);

/** The newer-QEMU features Ferry offers, by the schema name that proves a QEMU has them. */
export const OPTIONAL_FEATURES = {
  'dirty-limit': (f: MigrationFeatures) => has(f.capabilities, 'dirty-limit') && has(f.parameters, 'vcpu-dirty-limit'),
  'switchover-ack': (f: MigrationFeatures) => has(f.capabilities, 'switchover-ack'),
  'avail-switchover-bandwidth': (f: MigrationFeatures) => has(f.parameters, 'avail-switchover-bandwidth'),
  'mapped-ram': (f: MigrationFeatures) => has(f.capabilities, 'mapped-ram'),
  'postcopy-preempt': (f: MigrationFeatures) => has(f.capabilities, 'postcopy-preempt'),
  'zero-page-detection': (f: MigrationFeatures) => has(f.parameters, 'zero-page-detection'),
} as const;
export type OptionalFeature = keyof typeof OPTIONAL_FEATURES;

/** The optional features a QEMU offers (for host facts and the plan dialog). */
export function optionalFeatures(f: MigrationFeatures): OptionalFeature[] {
  return (Object.keys(OPTIONAL_FEATURES) as OptionalFeature[]).filter((k) => OPTIONAL_FEATURES[k](f));
}

/**
 * The capabilities to set on one end: a capability turned off that this QEMU does not have
 * is dropped (it is off there by definition: `compress` after 9.1); one turned on that it
 * does not have is refused naming the QEMU.
 */
export function capabilitiesFor(wanted: Record<string, boolean>, f: MigrationFeatures, who: string): { capability: string; state: boolean }[] {
  const missing = Object.entries(wanted).filter(([k, on]) => on && !has(f.capabilities, k)).map(([k]) => k);
  if (missing.length) {
    throw new FerryException('UNSUPPORTED', `${who}'s QEMU${f.version ? ` ${f.version}` : ''} has no migration capability ${missing.join(', ')}`, { missing, version: f.version });
  }
  return Object.entries(wanted).filter(([k]) => has(f.capabilities, k)).map(([capability, state]) => ({ capability, state }));
}

/** Parameters this QEMU knows; an unknown one is refused naming the QEMU (never sent to fail obscurely). */
export function parametersFor(wanted: Record<string, unknown>, f: MigrationFeatures, who: string): Record<string, unknown> {
  const missing = Object.keys(wanted).filter((k) => !has(f.parameters, k));
  if (missing.length) {
    throw new FerryException('UNSUPPORTED', `${who}'s QEMU${f.version ? ` ${f.version}` : ''} has no migration parameter ${missing.join(', ')}`, { missing, version: f.version });
  }
  return wanted;
}

const cache = new Map<string, Promise<MigrationFeatures>>();

/** The greeting's `x.y.z`, or undefined. */
export function greetingVersion(q: QmpClient): string | undefined {
  const v = q.greeting.version?.qemu;
  return v ? `${v.major}.${v.minor}.${v.micro}` : undefined;
}

/**
 * A QEMU's migration surface through an open monitor, read once per build: the key is the
 * greeting's version and package string, which name the binary as well as any path could.
 */
export function featuresOf(q: QmpClient): Promise<MigrationFeatures> {
  const version = greetingVersion(q);
  const key = `${version ?? '?'}\n${q.greeting.version?.package ?? ''}`;
  let hit = version ? cache.get(key) : undefined;
  if (!hit) {
    hit = q.execute<SchemaEntity[]>('query-qmp-schema', undefined, { timeoutMs: 20_000 }).then((raw) => migrationFeatures(new QmpSchema(raw), version));
    if (version) {
      cache.set(key, hit);
      hit.catch(() => cache.delete(key));
    }
  }
  return hit;
}

/** Seeds the cache (a probe that already read the schema through another monitor). */
export function rememberFeatures(version: string, pkg: string, f: MigrationFeatures): void {
  cache.set(`${version}\n${pkg}`, Promise.resolve(f));
}
