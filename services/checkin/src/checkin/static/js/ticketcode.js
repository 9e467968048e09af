// Offline ticket-code verification for the door app: the same rules as plenary_kit.ticketcode
// (Python), checked against the same vectors. Byte layout: docs/ticket-code.md.
// Uses WebCrypto Ed25519, so it needs a secure context (https or localhost).

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const FORMAT = 2;
const LEGACY_FORMAT = 1;
const SIGNATURE_BYTES = 64;
const HEADER = 1 + 16 + 16 + 4;
const MAX_TICKET_TYPE = 32;
const MAX_ENTITLEMENT_BYTES = 56;
const MAX_TEXT = 320;

export const Verdict = Object.freeze({
  VALID: "valid",
  MALFORMED: "malformed",
  WRONG_EVENT: "wrong_event",
  INVALID_SIGNATURE: "invalid_signature",
  REVOKED: "revoked",
});

class Malformed extends Error {}

function base32Text(bytes) {
  let text = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      text += ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) text += ALPHABET[(buffer << (5 - bits)) & 31];
  return text;
}

function rawBytes(text) {
  const cleaned = String(text).trim().toUpperCase();
  if (!cleaned || cleaned.length > MAX_TEXT) throw new Malformed("empty or oversized code");
  // Unpadded base32 never leaves 1, 3 or 6 characters in its last group.
  if ([1, 3, 6].includes(cleaned.length % 8)) throw new Malformed("not base32");
  const out = new Uint8Array(Math.floor((cleaned.length * 5) / 8));
  let buffer = 0;
  let bits = 0;
  let at = 0;
  for (const char of cleaned) {
    const value = ALPHABET.indexOf(char);
    if (value < 0) throw new Malformed("not base32");
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out[at++] = (buffer >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  // Unused trailing bits must be zero, or two texts would carry the same code.
  if (base32Text(out) !== cleaned) throw new Malformed("not canonical base32");
  return out;
}

function uuidOf(bytes) {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function isTypeCode(bytes) {
  return bytes.length > 0 && bytes.length <= MAX_TICKET_TYPE && bytes.every((b) => b >= 0x21 && b <= 0x7e);
}

/** Parse a code without checking its signature; throws on anything odd. */
export function decode(text) {
  const raw = rawBytes(text);
  if (raw.length < HEADER + 1 || (raw[0] !== FORMAT && raw[0] !== LEGACY_FORMAT)) {
    throw new Malformed("unknown format or truncated");
  }
  const typeLength = raw[HEADER];
  const typeEnd = HEADER + 1 + typeLength;
  const typeBytes = raw.subarray(HEADER + 1, typeEnd);
  if (typeBytes.length !== typeLength || !isTypeCode(typeBytes)) throw new Malformed("bad ticket type");
  let bitmap = new Uint8Array(0);
  let end = typeEnd;
  if (raw[0] === FORMAT) {
    if (raw.length <= typeEnd) throw new Malformed("truncated");
    const bitmapLength = raw[typeEnd];
    end = typeEnd + 1 + bitmapLength;
    bitmap = raw.subarray(typeEnd + 1, end);
    if (bitmapLength > MAX_ENTITLEMENT_BYTES || (bitmap.length > 0 && bitmap[bitmap.length - 1] === 0)) {
      throw new Malformed("bad entitlements");
    }
  }
  if (raw.length !== end + SIGNATURE_BYTES) throw new Malformed("bad length");
  const entitlements = [];
  for (let i = 0; i < bitmap.length * 8; i++) {
    if (bitmap[i >> 3] & (0x80 >> (i & 7))) entitlements.push(i);
  }
  return {
    format: raw[0],
    eventId: uuidOf(raw.subarray(1, 17)),
    ticketId: uuidOf(raw.subarray(17, 33)),
    keyId: Array.from(raw.subarray(33, HEADER), (b) => b.toString(16).padStart(2, "0")).join(""),
    ticketType: String.fromCharCode(...typeBytes),
    entitlements,
    signed: raw.slice(0, end),
    signature: raw.slice(end),
  };
}

function base64UrlBytes(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/**
 * Public keys as GET /api/v1/events/{event_id}/keys gives them ({key_id: url-safe base64}
 * or that endpoint's "keys" list), imported once for verifying many codes.
 */
export async function importKeys(keys) {
  const entries = Array.isArray(keys) ? keys.map((k) => [k.key_id, k.public_key]) : Object.entries(keys);
  const imported = new Map();
  for (const [keyId, publicKey] of entries) {
    const key = await crypto.subtle.importKey("raw", base64UrlBytes(publicKey), { name: "Ed25519" }, false, [
      "verify",
    ]);
    imported.set(keyId, key);
  }
  return imported;
}

export async function verify(code, key) {
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, code.signature, code.signed);
  } catch {
    return false;
  }
}

/**
 * What the door can decide offline: {verdict, ticket?}. `keys` is importKeys' map (the
 * event's keys, current and rotated); `revoked` a Set of revoked ticket ids. A known key is
 * checked before the event, so an altered event id reads as invalid_signature.
 */
export async function check(text, eventId, keys, revoked = new Set()) {
  let code;
  try {
    code = decode(text);
  } catch (error) {
    if (error instanceof Malformed) return { verdict: Verdict.MALFORMED };
    throw error;
  }
  const ticket = {
    format: code.format,
    event_id: code.eventId,
    ticket_id: code.ticketId,
    key_id: code.keyId,
    ticket_type: code.ticketType,
    entitlements: code.entitlements,
  };
  const key = keys.get(code.keyId);
  if (!key) {
    return { verdict: code.eventId !== eventId ? Verdict.WRONG_EVENT : Verdict.INVALID_SIGNATURE, ticket };
  }
  if (!(await verify(code, key))) return { verdict: Verdict.INVALID_SIGNATURE, ticket };
  if (code.eventId !== eventId) return { verdict: Verdict.WRONG_EVENT, ticket };
  if (revoked.has(code.ticketId)) return { verdict: Verdict.REVOKED, ticket };
  return { verdict: Verdict.VALID, ticket };
}
