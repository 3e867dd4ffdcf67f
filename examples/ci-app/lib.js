// The code under test: a price calculator. variant.json's "fail" switches in a broken rounding, so that
// the same app serves as the passing and the failing project of the CI examples and tests.
import { readFileSync } from 'node:fs';

const variant = JSON.parse(readFileSync(new URL('./variant.json', import.meta.url), 'utf8'));

export function total(prices) {
  return prices.reduce((a, b) => a + b, 0);
}

export function withTax(amount, rate) {
  const raw = amount * (1 + rate);
  return variant.fail ? Math.floor(raw) : Math.round(raw * 100) / 100;
}
