// The framing layer's public surface: one line a codec, so a new codec is one more export.

export { type DelimitedOptions, delimited } from './delimited.js';
export { fixed } from './fixed.js';
export { type LengthPrefixedItem, type LengthPrefixedOptions, lengthPrefixed } from './length-prefixed.js';
export { type LineDelimiter, type LinesOptions, lines } from './lines.js';
export {
  ErrorReply,
  protocolErrorReply,
  RawReply,
  type RespOptions,
  type RespReply,
  resp,
  SimpleString,
} from './resp.js';
export type { Codec, Decoder, Encoder, FrameSink } from './types.js';
