/**
 * JSON schemas of the operator API (request validation by fastify's Ajv;
 * responses serialised through them, so a field not listed here can never
 * leave the hub; the OpenAPI description is generated from them), and the
 * stable error codes every error response carries:
 *   { "error": { "code": "BAD_REQUEST", "message": "..." } }
 */
export const API_ERROR_CODES = [
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'UNKNOWN_DEVICE',
  'DEVICE_REVOKED',
  'ALREADY_PROVISIONED',
  'KEY_IDS_EXHAUSTED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'RATE_LIMITED',
  'NOT_READY',
  'INTERNAL',
  'NO_RECOVERY_REQUEST',
] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export const FILTERS = ['all', 'online', 'offline', 'pending', 'outOfSync'] as const;
export type Filter = (typeof FILTERS)[number];

const deviceId = { type: 'string', pattern: '^[0-9a-fA-F]{16}$', description: '16 hex digits' } as const;
const nullableNumber = { type: ['number', 'null'] } as const;

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: [...API_ERROR_CODES] }, message: { type: 'string' } },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
} as const;

export const deviceSchema = {
  $id: 'Device',
  type: 'object',
  description: 'A device as the hub sees it: key ids and times, never key material.',
  required: ['deviceId', 'activeKeyId', 'pendingKeyId', 'connection', 'status'],
  properties: {
    deviceId: { type: 'string' },
    mode: { type: 'string', enum: ['classic', 'dh'], description: 'rekey mode (docs/PROTOCOL.md §11): classic, or dh (X25519 exchange mixed with the current key)' },
    activeKeyId: { type: 'integer' },
    pendingKeyId: { type: ['integer', 'null'] },
    pendingSince: nullableNumber,
    connection: { type: 'string', enum: ['online', 'offline'] },
    persisting: { type: 'boolean' },
    rotationQueued: { type: 'boolean' },
    lastSeenAt: nullableNumber,
    activeSince: { type: 'number', description: 'when the active key was confirmed (the last rotation) or provisioned, ms since the epoch' },
    createdAt: nullableNumber,
    rotations: { type: 'integer' },
    lastRejection: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, at: { type: 'number' } },
      additionalProperties: false,
    },
    status: { type: 'string', enum: ['ok', 'pending', 'outOfSync', 'offline'] },
  },
  additionalProperties: false,
} as const;

export const auditEntrySchema = {
  $id: 'AuditEntry',
  type: 'object',
  required: ['seq', 'at', 'actor', 'action', 'outcome'],
  properties: {
    seq: { type: 'integer' },
    at: { type: 'number' },
    actor: { type: 'string' },
    action: { type: 'string' },
    deviceId: { type: 'string' },
    outcome: { type: 'string' },
    detail: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean', 'null'] } },
  },
  additionalProperties: false,
} as const;

export const revocationSchema = {
  $id: 'Revocation',
  type: 'object',
  required: ['seq', 'deviceId', 'revokedAt', 'actor', 'lastKeyId'],
  properties: {
    seq: { type: 'integer' },
    deviceId: { type: 'string' },
    revokedAt: { type: 'number' },
    actor: { type: 'string' },
    reason: { type: 'string' },
    lastKeyId: { type: 'integer' },
  },
  additionalProperties: false,
} as const;

const errors = { 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' }, 429: { $ref: 'Error#' } } as const;

export const deviceParams = { type: 'object', required: ['id'], properties: { id: deviceId }, additionalProperties: false } as const;

export const listDevicesSchema = {
  summary: 'List devices (paged, filtered)',
  querystring: {
    type: 'object',
    properties: {
      offset: { type: 'integer', minimum: 0, default: 0 },
      limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
      filter: { type: 'string', enum: [...FILTERS], default: 'all' },
      pendingOlderThanMs: { type: 'integer', minimum: 0, description: 'with any filter: only devices whose pending key is older' },
      q: { type: 'string', pattern: '^[0-9a-fA-F]{0,16}$', description: 'device id prefix' },
      mode: { type: 'string', enum: ['classic', 'dh'], description: 'only devices of this rekey mode' },
    },
    additionalProperties: false,
  },
  response: {
    200: {
      type: 'object',
      required: ['total', 'offset', 'limit', 'devices', 'fleet'],
      properties: {
        total: { type: 'integer', description: 'devices matching the filter' },
        offset: { type: 'integer' },
        limit: { type: 'integer' },
        devices: { type: 'array', items: { $ref: 'Device#' } },
        fleet: {
          type: 'object',
          properties: { devices: { type: 'integer' }, online: { type: 'integer' }, offline: { type: 'integer' }, pending: { type: 'integer' }, outOfSync: { type: 'integer' } },
          additionalProperties: false,
        },
      },
      additionalProperties: false,
    },
    ...errors,
  },
} as const;

export const getDeviceSchema = {
  summary: 'One device and its rotation history (from the audit trail)',
  params: deviceParams,
  response: {
    200: {
      type: 'object',
      required: ['device', 'history'],
      properties: { device: { $ref: 'Device#' }, history: { type: 'array', items: { $ref: 'AuditEntry#' } } },
      additionalProperties: false,
    },
    404: { $ref: 'Error#' },
    ...errors,
  },
} as const;

const rotateOutcome = {
  type: 'object',
  required: ['deviceId', 'outcome'],
  properties: {
    deviceId: { type: 'string' },
    outcome: { type: 'string', enum: ['started', 'queued', 'refused'] },
    code: { type: 'string' },
  },
  additionalProperties: false,
} as const;

export const rotateOneSchema = {
  summary: 'Rotate one device\'s key now',
  params: deviceParams,
  response: { 200: rotateOutcome, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, ...errors },
} as const;

export const rotateManySchema = {
  summary: 'Rotate a selection: the listed devices, or every device a filter matches',
  body: {
    type: 'object',
    properties: {
      deviceIds: { type: 'array', items: deviceId, minItems: 1, maxItems: 10000, uniqueItems: true },
      filter: { type: 'string', enum: [...FILTERS] },
    },
    oneOf: [{ required: ['deviceIds'] }, { required: ['filter'] }],
    additionalProperties: false,
  },
  response: {
    200: { type: 'object', required: ['results'], properties: { results: { type: 'array', items: rotateOutcome } }, additionalProperties: false },
    ...errors,
  },
} as const;

export const revokeSchema = {
  summary: 'Revoke a device: keys erased, connections closed, later connections refused',
  params: deviceParams,
  body: {
    type: ['object', 'null'],
    properties: { reason: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x20-\\x7e]*$' } },
    additionalProperties: false,
  },
  response: { 200: { $ref: 'Revocation#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, ...errors },
} as const;

const hubRecord = {
  type: 'object',
  required: ['deviceId', 'keyId', 'key'],
  properties: {
    deviceId,
    keyId: { type: 'integer', minimum: 1, maximum: 4294967295 },
    key: { type: 'string', pattern: '^[0-9a-fA-F]{128}$' },
    mode: { type: 'string', enum: ['classic', 'dh'], description: 'absent: classic (a record from before the DH mode)' },
    devicePublicKey: { type: 'string', pattern: '^[0-9a-fA-F]{64}$', description: "the device's static X25519 public key (recovery, docs/PROTOCOL.md §12.6); with hubStaticId" },
    hubStaticId: { type: 'integer', minimum: 1, maximum: 4294967295 },
  },
  additionalProperties: false,
} as const;

export const provisionSchema = {
  summary: 'Create devices with fresh ids and initial keys; the only response that carries key material (once; Cache-Control: no-store)',
  body: {
    type: 'object',
    required: ['count'],
    properties: { count: { type: 'integer', minimum: 1, maximum: 100 }, mode: { type: 'string', enum: ['classic', 'dh'], default: 'classic' } },
    additionalProperties: false,
  },
  response: {
    201: { type: 'object', required: ['records'], properties: { records: { type: 'array', items: hubRecord } }, additionalProperties: false },
    ...errors,
  },
} as const;

export const importSchema = {
  summary: 'Import hub records written by tools/provision (all or none); keys are never echoed',
  body: {
    type: 'object',
    required: ['records'],
    properties: { records: { type: 'array', items: hubRecord, minItems: 1, maxItems: 1000 } },
    additionalProperties: false,
  },
  response: {
    201: { type: 'object', required: ['imported'], properties: { imported: { type: 'array', items: { type: 'string' } } }, additionalProperties: false },
    409: { $ref: 'Error#' },
    ...errors,
  },
} as const;

export const auditSchema = {
  summary: 'The audit trail, newest first (page with before = the last seq seen)',
  querystring: {
    type: 'object',
    properties: {
      before: { type: 'integer', minimum: 1 },
      limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
      deviceId,
      action: { type: 'string', pattern: '^[a-z.]{1,64}$' },
    },
    additionalProperties: false,
  },
  response: {
    200: { type: 'object', required: ['entries'], properties: { entries: { type: 'array', items: { $ref: 'AuditEntry#' } } }, additionalProperties: false },
    ...errors,
  },
} as const;

export const revocationsSchema = {
  summary: 'Revoked devices, oldest first (page with after = the last seq seen)',
  querystring: { type: 'object', properties: { after: { type: 'integer', minimum: 0, default: 0 } }, additionalProperties: false },
  response: {
    200: { type: 'object', required: ['revocations'], properties: { revocations: { type: 'array', items: { $ref: 'Revocation#' } } }, additionalProperties: false },
    ...errors,
  },
} as const;

// ---- issue 14: recovery (docs/HUB.md §14) ----

const recoveryRequest = {
  type: 'object',
  required: ['deviceId', 'firstAt', 'lastAt', 'attempts', 'newKeyId', 'claimedActive', 'claimedFuture', 'approvedAt', 'approvedBy'],
  properties: {
    deviceId,
    firstAt: { type: 'number' },
    lastAt: { type: 'number' },
    attempts: { type: 'integer' },
    newKeyId: { type: 'integer' },
    claimedActive: { type: 'integer' },
    claimedFuture: { type: 'integer' },
    approvedAt: nullableNumber,
    approvedBy: { type: ['string', 'null'] },
  },
  additionalProperties: false,
} as const;

export const recoverySchema = {
  summary: 'Recovery (docs/HUB.md §14): the policy, the requests awaiting or holding approval, the recent accepted recoveries',
  querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }, additionalProperties: false },
  response: {
    200: {
      type: 'object',
      required: ['policy', 'requests', 'recent'],
      properties: {
        policy: {
          type: 'object',
          required: ['mode', 'perDeviceLimit', 'windowSeconds', 'hubStaticId'],
          properties: { mode: { type: 'string', enum: ['auto', 'approve', 'off'] }, perDeviceLimit: { type: 'integer' }, windowSeconds: { type: 'number' }, hubStaticId: { type: ['integer', 'null'] } },
          additionalProperties: false,
        },
        requests: { type: 'array', items: recoveryRequest },
        recent: {
          type: 'array',
          items: { type: 'object', required: ['seq', 'deviceId', 'at', 'newKeyId'], properties: { seq: { type: 'integer' }, deviceId, at: { type: 'number' }, newKeyId: { type: 'integer' } }, additionalProperties: false },
        },
      },
      additionalProperties: false,
    },
    ...errors,
  },
} as const;

export const approveRecoverySchema = {
  summary: "Approve a device's recorded recovery request (policy approve): its next authenticated attempt is accepted, within the per-device limit",
  params: deviceParams,
  body: { type: ['object', 'null'], properties: {}, additionalProperties: false },
  response: {
    200: { type: 'object', required: ['deviceId', 'outcome'], properties: { deviceId, outcome: { type: 'string', enum: ['approved', 'already'] } }, additionalProperties: false },
    404: { $ref: 'Error#' },
    409: { $ref: 'Error#' },
    ...errors,
  },
} as const;

export const rateSchema = {
  summary: 'Rotations confirmed per 10-second bucket over the last 10 minutes',
  response: {
    200: {
      type: 'object',
      required: ['bucketMs', 'buckets'],
      properties: {
        bucketMs: { type: 'integer' },
        buckets: { type: 'array', items: { type: 'object', properties: { t: { type: 'number' }, confirmed: { type: 'number' } }, additionalProperties: false } },
      },
      additionalProperties: false,
    },
    ...errors,
  },
} as const;

export const statsSchema = {
  summary: 'The hub\'s counters (as in its stats log line)',
  response: { 200: { type: 'object', additionalProperties: { type: 'number' } }, ...errors },
} as const;

export const sessionSchema = {
  summary: 'Who the presented token is (id and scope)',
  response: {
    200: { type: 'object', required: ['tokenId', 'scope'], properties: { tokenId: { type: 'string' }, scope: { type: 'string', enum: ['read', 'admin'] } }, additionalProperties: false },
    ...errors,
  },
} as const;

export const healthSchema = {
  summary: 'Liveness: the process answers',
  response: { 200: { type: 'object', properties: { status: { type: 'string' }, uptimeSeconds: { type: 'number' } }, additionalProperties: false }, ...errors },
} as const;

export const readySchema = {
  summary: 'Readiness: device listeners open and the database usable (503 otherwise)',
  response: {
    200: { type: 'object', properties: { ready: { type: 'boolean' }, listeners: { type: 'integer' }, devices: { type: 'integer' } }, additionalProperties: false },
    503: { $ref: 'Error#' },
    ...errors,
  },
} as const;
