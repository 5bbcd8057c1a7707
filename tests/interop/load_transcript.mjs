// Open a transcript with OpenClaw's own loader and report what OpenClaw sees, as one JSON line.
//   node load_transcript.mjs <openclaw package dir> <transcript.jsonl>
// The caller passes a COPY: SessionManager.open() may rewrite the file, and whether it did is
// one of the things we report (sha256 before/after).
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, file] = process.argv.slice(2);
const sha = () => createHash("sha256").update(readFileSync(file)).digest("hex");
const before = sha();
const sdk = await import(pathToFileURL(join(pkgDir, "dist/plugin-sdk/agent-sessions.js")).href);
const repairChunk = readdirSync(join(pkgDir, "dist")).find((n) => n.startsWith("session-transcript-repair-") && n.endsWith(".js"));
const repair = await import(pathToFileURL(join(pkgDir, "dist", repairChunk)).href);
// The chunk's exports are minified names; pick the sanitizer by its source name.
const sanitize = Object.values(repair).find((f) => typeof f === "function" && f.name === "sanitizeToolUseResultPairing");

const sm = sdk.SessionManager.open(file, join(file, ".."));
const entries = sm.getEntries();
const roots = entries.filter((e) => e.parentId === null || e.parentId === undefined).length;
const ctx = sm.buildSessionContext();
const messages = ctx.messages || [];
const sanitized = sanitize ? sanitize(messages) : messages;
const out = {
  rewritten: sha() !== before,
  recovered_corrupt_header: sm.wasRecoveredFromCorruptHeader ? sm.wasRecoveredFromCorruptHeader() : false,
  entries: entries.length,
  roots,
  messages: messages.length,
  first_role: messages.length ? messages[0].role : null,
  roles: messages.map((m) => m.role),
  sanitizer_found: Boolean(sanitize),
  sanitized_messages: Array.isArray(sanitized) ? sanitized.length : (sanitized.messages || []).length,
};
process.stdout.write(JSON.stringify(out) + "\n");
