/*
 * node dist/bench/profile-summary.js FILE.cpuprofile [TOP]
 *
 * Prints where a V8 CPU profile (from node --cpu-prof, or npm run bench --
 * --cpu-prof DIR) spent its time: self time by package or area, and the
 * TOP functions by self time (default 25). Idle time is left out of the
 * percentages, so they are shares of the time the process was busy.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

const [path, topArgument] = process.argv.slice(2);
if (path === undefined) {
  process.stderr.write("usage: profile-summary.js FILE.cpuprofile [TOP]\n");
  process.exit(2);
}
const top = Number(topArgument ?? 25);
const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;

// Self time per node: the time deltas of the samples that landed in it.
const selfMicros = new Map<number, number>();
const samples = profile.samples ?? [];
const deltas = profile.timeDeltas ?? [];
for (let index = 0; index < samples.length; index++) {
  const id = samples[index]!;
  // A sample's delta is the time since the previous sample, so it belongs to the next one.
  const delta = deltas[index + 1] ?? 0;
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + Math.max(0, delta));
}

/** Area of a function: a package, Node's internals, the project's own code, or a V8 pseudo-node. */
function areaOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node: internals";
  const modules = url.lastIndexOf("/node_modules/");
  if (modules !== -1) {
    const rest = url.slice(modules + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const project = /\/dist\/(src|gen|bench)\/(.*)$/.exec(url);
  if (project) return `${project[1]}/${project[2]!.split("/")[0]}`;
  return url;
}

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(/^.*\/node_modules\//, "").replace(/^file:\/\/.*\/dist\//, "dist/");
  return `${functionName || "(anonymous)"} ${file ? `${file}:${lineNumber + 1}` : ""}`.trim();
}

const byArea = new Map<string, number>();
const byFunction = new Map<string, number>();
let busy = 0;
let idle = 0;
for (const node of profile.nodes) {
  const micros = selfMicros.get(node.id) ?? 0;
  if (micros === 0) continue;
  if (node.callFrame.functionName === "(idle)") {
    idle += micros;
    continue;
  }
  busy += micros;
  const area = areaOf(node);
  byArea.set(area, (byArea.get(area) ?? 0) + micros);
  const name = nameOf(node);
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
}

const seconds = (micros: number): string => (micros / 1e6).toFixed(2);
const share = (micros: number): string => `${((100 * micros) / busy).toFixed(1)}%`;
process.stdout.write(`${path}\n`);
process.stdout.write(`busy ${seconds(busy)} s, idle ${seconds(idle)} s of ${seconds(profile.endTime - profile.startTime)} s\n\n`);
process.stdout.write("self time by area:\n");
for (const [area, micros] of [...byArea].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
  process.stdout.write(`  ${share(micros).padStart(6)}  ${seconds(micros).padStart(7)} s  ${area}\n`);
}
process.stdout.write(`\ntop ${top} functions by self time:\n`);
for (const [name, micros] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  process.stdout.write(`  ${share(micros).padStart(6)}  ${seconds(micros).padStart(7)} s  ${name}\n`);
}
