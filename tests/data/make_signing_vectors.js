#!/usr/bin/env node
// Generates tests/data/signing_vectors.json: what JavaScript's JSON.stringify and Node's
// crypto HMAC produce, so tests/test_signing.py can check bot/xpay/signing.py against them.
//
//   node tests/data/make_signing_vectors.js > tests/data/signing_vectors.json
//
// Uses only `crypto` and `JSON.stringify`. Each vector:
//   name, secret, object (the JS object), json (JSON.stringify(object)),
//   signature (lowercase hex HMAC-SHA256 of the UTF-8 json, keyed with secret),
//   decimal_paths (dotted key paths whose numbers Python must pass as Decimal(str(x))),
//   source (optional: the JSON text as written, when its key order differs from JS's).
'use strict';
const crypto = require('crypto');

function checkout(amount, name, extra) {
  return Object.assign({
    amount: amount,
    currency: 'PKR',
    customer: { email: 'testuser@gmail.com', name: name, phone: '03415682456' },
    shipping: {
      address1: 'Gulberg', city: 'Lahore', country: 'Pakistan', zip: '65191',
      shipping_method: 'Standard', province: 'Punjab',
    },
    metadata: { order_reference: 'checkout-pl-02' },
    success_url: 'https://webhook.site/abd82b58-bf61-4d68-b4b3-7688f01b4e92',
    failure_url: 'https://www.google.com/',
  }, extra || {});
}

const cases = [
  {
    name: 'xpay documented example, integer amount',
    secret: 'hmac_sc_api_test',
    object: checkout(5, 'user', { payment_methods: ['card', 'jazzcash'] }),
    decimal_paths: ['amount'],
  },
  {
    name: 'fractional amount 1500.5, Urdu name',
    secret: 'hmac_sc_api_test',
    object: checkout(1500.5, 'محمد علی'),
    decimal_paths: ['amount'],
  },
  {
    name: 'amount 0.1, umlaut name, all methods',
    secret: 's3cr3t/with+symbols=',
    object: checkout(0.1, 'Müller', {
      payment_methods: ['card', 'easypaisa', 'jazzcash', 'googlepay', 'dqr'],
    }),
    decimal_paths: ['amount'],
  },
  {
    name: 'amount 99.99, emoji and CJK',
    secret: 'ключ-🔑',
    object: checkout(99.99, 'Zoë 😀 李雷', { metadata: { order_reference: 'ord/2025/07 #1' } }),
    decimal_paths: ['amount'],
  },
  {
    name: 'control characters, quotes and backslashes',
    secret: 'k',
    object: {
      note: 'tab\there\nnew line\r\u0000\u0001\u001f\u007f\b\f end',
      quoted: 'say "hi" \\ back\\slash',
      sep: 'line\u2028para\u2029',
      url: 'https://example.com/a/b?c=d&e=<f>',
    },
    decimal_paths: [],
  },
  {
    name: 'nested numbers in shortest form',
    secret: 'webhook-secret',
    object: {
      amount: 10,
      refunded: 0,
      negative: -2.5,
      small: 0.000001,
      tiny: 1e-7,
      big: 1e21,
      large_int: 12345678901234567890,
      exact: 9007199254740993,
      list: [1, 2.25, [3.5, { deep: 100.1 }]],
      nested: { total: 12.3, tax: 0.3 },
    },
    decimal_paths: ['amount', 'negative', 'nested.total', 'nested.tax'],
  },
  {
    name: 'webhook sample payload',
    secret: 'whsec_test',
    object: {
      type: 'PAYMENT_INTENT_NOTIFICATION',
      payment_intent_id: 'xpay_pi_1573edc2',
      refund_id: null,
      amount: 10,
      currency: 'PKR',
      status: 'succeeded',
      customer: { name: '', email: '', phone: null },
      shipping: {},
      payment_method_types: 'card',
      product: {},
      transaction_details: {
        _id: '', status: 'CAPTURED', secure: '3DS2', refunded_amount: 0,
        gateway: 'bank-alfalah',
        response_from_bank: 'The payment was completed successfully',
        status_message_from_bank: 'PAYMENT_CAPTURED',
        activity: [{ status: 'AUTHENTICATION_SUCCESSFUL', amount: 10,
          card: { last4digits: '0008', type: 'MASTERCARD' } }],
      },
      flags: [true, false, null],
    },
    decimal_paths: ['amount', 'transaction_details.refunded_amount'],
  },
  {
    name: 'integer-like keys are ordered first by JavaScript',
    secret: 'k2',
    source: '{"b":1,"10":"ten","2":"two","a":{"z":0,"1":1},"01":"not an index","-1":"neg"}',
    decimal_paths: [],
  },
  {
    name: 'lone surrogates are escaped, pairs are not',
    secret: 'k3',
    object: { lone_high: 'a\ud800b', lone_low: '\udc00', pair: '\ud83d\ude00', key_\u00e9: 1 },
    decimal_paths: [],
  },
  {
    name: 'empty containers and empty strings',
    secret: '',
    object: { a: [], b: {}, c: '', d: [[]], e: [{}] },
    decimal_paths: [],
  },
];

const vectors = cases.map((c) => {
  const object = c.source !== undefined ? JSON.parse(c.source) : c.object;
  const json = JSON.stringify(object);
  const signature = crypto.createHmac('SHA256', c.secret).update(json).digest('hex');
  const v = { name: c.name, secret: c.secret, object, json, signature, decimal_paths: c.decimal_paths };
  if (c.source !== undefined) v.source = c.source;
  return v;
});

process.stdout.write(JSON.stringify({
  generator: 'tests/data/make_signing_vectors.js',
  node: process.version,
  vectors,
}, null, 2) + '\n');
