/**
 * SwitchboardError: a failed call with its `google.rpc.Status` details decoded (mirrors
 * switchboard_client.errors). The detail messages are the generated google.rpc types.
 */

import { createRegistry, fromBinary, isMessage, toJson } from '@bufbuild/protobuf';
import { anyUnpack } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
  file_google_rpc_error_details,
} from '../gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../gen/google/rpc/status_pb.js';

/** @import { Message } from '@bufbuild/protobuf' */
/** @import { Status } from '../gen/google/rpc/status_pb.js' */
/** @import { BadRequest_FieldViolation, QuotaFailure_Violation } from '../gen/google/rpc/error_details_pb.js' */

export const DETAILS_KEY = 'grpc-status-details-bin';
export const REQUEST_ID_KEY = 'x-request-id';

// Every google.rpc error detail type, so any detail the gateway sends decodes to its message.
const DETAIL_TYPES = createRegistry(file_google_rpc_error_details);

/** @type {Record<number, string>} */
const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status)
    .filter(([, value]) => typeof value === 'number')
    .map(([name, value]) => [value, name]),
);

/** The name of a gRPC status code ("NOT_FOUND" for 5). */
export function codeName(/** @type {number} */ code) {
  return CODE_NAMES[code] ?? String(code);
}

/**
 * @typedef {object} ErrorFields
 * @property {number} code the gRPC status code (`status.NOT_FOUND` is 5)
 * @property {string} message
 * @property {string | null} [requestId] the call's `x-request-id`
 * @property {unknown} [cause] what ended the call locally (an AbortSignal's reason)
 */

/** A failed call: gRPC code, ErrorInfo reason, RetryInfo delay (mirrors switchboard_client). */
export class SwitchboardError extends Error {
  /** @param {ErrorFields} fields */
  constructor({ code, message, requestId = null, cause }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SwitchboardError';
    /** The gRPC status code (`status.RESOURCE_EXHAUSTED` is 8). */
    this.code = code;
    /** e.g. "RESOURCE_EXHAUSTED". */
    this.codeName = codeName(code);
    /** `google.rpc.ErrorInfo.reason`, e.g. "MODEL_NOT_FOUND"; "" without details. */
    this.reason = '';
    /** `google.rpc.ErrorInfo.domain` ("switchboard.dev"). */
    this.domain = '';
    /** @type {Record<string, string>} `google.rpc.ErrorInfo.metadata` */
    this.metadata = {};
    /** @type {number | null} seconds to wait before retrying (`google.rpc.RetryInfo`) */
    this.retryAfter = null;
    /** @type {BadRequest_FieldViolation[]} `google.rpc.BadRequest` */
    this.fieldViolations = [];
    /** @type {QuotaFailure_Violation[]} `google.rpc.QuotaFailure` */
    this.quotaViolations = [];
    /** @type {Message[]} every decoded detail, as its generated google.rpc message */
    this.details = [];
    /** @type {Status | null} the whole `google.rpc.Status` from `grpc-status-details-bin` */
    this.status = null;
    /** The call's `x-request-id`, to quote when reporting a problem. */
    this.requestId = requestId;
  }

  toString() {
    return `${this.name}: ${this.codeName}${this.reason ? ' ' + this.reason : ''}: ${this.message}`;
  }

  /** The error as plain JSON (the Status in its proto3 JSON form, details with `@type`). */
  toJSON() {
    return {
      code: this.code,
      codeName: this.codeName,
      reason: this.reason,
      domain: this.domain,
      metadata: this.metadata,
      retryAfter: this.retryAfter,
      message: this.message,
      fieldViolations: this.fieldViolations.map(({ field, description }) => ({
        field,
        description,
      })),
      quotaViolations: this.quotaViolations.map(({ subject, description }) => ({
        subject,
        description,
      })),
      status: this.status && statusJson(this.status),
      requestId: this.requestId,
    };
  }

  /**
   * Decodes what grpc-js rejected a call with (code, details, trailing metadata).
   * @param {unknown} err
   * @param {unknown} [cause]
   */
  static fromServiceError(err, cause) {
    if (err instanceof SwitchboardError) return err;
    const service = /** @type {Partial<grpc.ServiceError>} */ (err ?? {});
    const metadata = service.metadata instanceof grpc.Metadata ? service.metadata : null;
    const out = new SwitchboardError({
      code: typeof service.code === 'number' ? service.code : grpc.status.UNKNOWN,
      message: service.details || service.message || 'unknown error',
      requestId: metadata ? firstText(metadata, REQUEST_ID_KEY) : null,
      cause,
    });
    const raw = metadata?.get(DETAILS_KEY)[0];
    if (Buffer.isBuffer(raw)) applyDetails(out, raw);
    return out;
  }
}

/**
 * The Status in proto3 JSON; a detail of a type outside google.rpc (which JSON cannot name
 * without its descriptor) is shown by its type URL alone.
 * @param {Status} status
 */
function statusJson(status) {
  const known = status.details.filter((any) => anyUnpack(any, DETAIL_TYPES) !== undefined);
  const json = /** @type {Record<string, any>} */ (
    toJson(StatusSchema, { ...status, details: known }, { registry: DETAIL_TYPES })
  );
  const unknown = status.details.filter((any) => !known.includes(any));
  if (unknown.length > 0) {
    json.details = [...(json.details ?? []), ...unknown.map((any) => ({ '@type': any.typeUrl }))];
  }
  return json;
}

/**
 * @param {SwitchboardError} out
 * @param {Uint8Array} raw the serialized google.rpc.Status
 */
function applyDetails(out, raw) {
  let status;
  try {
    status = fromBinary(StatusSchema, raw);
  } catch {
    return; // A malformed trailer leaves the plain gRPC code and message.
  }
  out.status = status;
  if (status.message) out.message = status.message;
  for (const any of status.details) {
    const detail = anyUnpack(any, DETAIL_TYPES);
    if (detail === undefined) continue;
    out.details.push(detail);
    if (isMessage(detail, ErrorInfoSchema)) {
      out.reason = detail.reason;
      out.domain = detail.domain;
      out.metadata = { ...detail.metadata };
    } else if (isMessage(detail, RetryInfoSchema) && detail.retryDelay) {
      out.retryAfter = Number(detail.retryDelay.seconds) + detail.retryDelay.nanos / 1e9;
    } else if (isMessage(detail, QuotaFailureSchema)) {
      out.quotaViolations = detail.violations;
    } else if (isMessage(detail, BadRequestSchema)) {
      out.fieldViolations = detail.fieldViolations;
    }
  }
}

/**
 * The first value of a metadata key as text, or null.
 * @param {grpc.Metadata} metadata
 * @param {string} key
 */
export function firstText(metadata, key) {
  const value = metadata.get(key)[0];
  if (value === undefined) return null;
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
