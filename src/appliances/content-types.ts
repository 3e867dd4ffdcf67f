import { extname } from 'node:path';
import { contentType } from 'mime-types';

/**
 * Where we answer otherwise than the mime-types database: `.st` is Pharo
 * and Smalltalk source here (the database says a sailing-tracker format),
 * `.ico` the type browsers expect, XML with its charset.
 */
const OVERRIDES: Record<string, string> = {
  '.st': 'text/plain; charset=utf-8',
  '.ico': 'image/x-icon',
  '.xml': 'application/xml; charset=utf-8',
};

/** The Content-Type served for a file name (the mime-types database); unknown extensions are plain bytes. */
export function contentTypeOf(path: string): string {
  const ext = extname(path).toLowerCase();
  return OVERRIDES[ext] ?? ((ext !== '' && contentType(ext)) || 'application/octet-stream');
}
