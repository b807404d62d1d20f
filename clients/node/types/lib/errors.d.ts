/** The name of a gRPC status code ("NOT_FOUND" for 5). */
export function codeName(code: number): string;
/**
 * The first value of a metadata key as text, or null.
 * @param {grpc.Metadata} metadata
 * @param {string} key
 */
export function firstText(metadata: grpc.Metadata, key: string): string | null;
/** @import { Message } from '@bufbuild/protobuf' */
/** @import { Status } from '../gen/google/rpc/status_pb.js' */
/** @import { BadRequest_FieldViolation, QuotaFailure_Violation } from '../gen/google/rpc/error_details_pb.js' */
export const DETAILS_KEY: "grpc-status-details-bin";
export const REQUEST_ID_KEY: "x-request-id";
/**
 * @typedef {object} ErrorFields
 * @property {number} code the gRPC status code (`status.NOT_FOUND` is 5)
 * @property {string} message
 * @property {string | null} [requestId] the call's `x-request-id`
 * @property {unknown} [cause] what ended the call locally (an AbortSignal's reason)
 */
/** A failed call: gRPC code, ErrorInfo reason, RetryInfo delay (mirrors switchboard_client). */
export class SwitchboardError extends Error {
    /**
     * Decodes what grpc-js rejected a call with (code, details, trailing metadata).
     * @param {unknown} err
     * @param {unknown} [cause]
     */
    static fromServiceError(err: unknown, cause?: unknown): SwitchboardError;
    /** @param {ErrorFields} fields */
    constructor({ code, message, requestId, cause }: ErrorFields);
    /** The gRPC status code (`status.RESOURCE_EXHAUSTED` is 8). */
    code: number;
    /** e.g. "RESOURCE_EXHAUSTED". */
    codeName: string;
    /** `google.rpc.ErrorInfo.reason`, e.g. "MODEL_NOT_FOUND"; "" without details. */
    reason: string;
    /** `google.rpc.ErrorInfo.domain` ("switchboard.dev"). */
    domain: string;
    /** @type {Record<string, string>} `google.rpc.ErrorInfo.metadata` */
    metadata: Record<string, string>;
    /** @type {number | null} seconds to wait before retrying (`google.rpc.RetryInfo`) */
    retryAfter: number | null;
    /** @type {BadRequest_FieldViolation[]} `google.rpc.BadRequest` */
    fieldViolations: BadRequest_FieldViolation[];
    /** @type {QuotaFailure_Violation[]} `google.rpc.QuotaFailure` */
    quotaViolations: QuotaFailure_Violation[];
    /** @type {Message[]} every decoded detail, as its generated google.rpc message */
    details: Message[];
    /** @type {Status | null} the whole `google.rpc.Status` from `grpc-status-details-bin` */
    status: Status | null;
    /** The call's `x-request-id`, to quote when reporting a problem. */
    requestId: string | null;
    /** The error as plain JSON (the Status in its proto3 JSON form, details with `@type`). */
    toJSON(): {
        code: number;
        codeName: string;
        reason: string;
        domain: string;
        metadata: Record<string, string>;
        retryAfter: number | null;
        message: string;
        fieldViolations: {
            field: string;
            description: string;
        }[];
        quotaViolations: {
            subject: string;
            description: string;
        }[];
        status: Record<string, any> | null;
        requestId: string | null;
    };
}
export type ErrorFields = {
    /**
     * the gRPC status code (`status.NOT_FOUND` is 5)
     */
    code: number;
    message: string;
    /**
     * the call's `x-request-id`
     */
    requestId?: string | null | undefined;
    /**
     * what ended the call locally (an AbortSignal's reason)
     */
    cause?: unknown;
};
import * as grpc from '@grpc/grpc-js';
import type { BadRequest_FieldViolation } from '../gen/google/rpc/error_details_pb.js';
import type { QuotaFailure_Violation } from '../gen/google/rpc/error_details_pb.js';
import type { Message } from '@bufbuild/protobuf';
import type { Status } from '../gen/google/rpc/status_pb.js';
