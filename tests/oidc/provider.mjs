// A real OpenID Connect provider on loopback for Bastion's browser tests: the npm package
// oidc-provider (a certified implementation) with its built-in login and consent pages.
//
// Started by tests/oidc_provider.py as `node provider.mjs`; reads
//   OIDC_HOST       the host name in the issuer (default "localhost": another cookie host than
//                   Bastion's 127.0.0.1, as a real provider would be)
//   OIDC_ACCOUNTS   a JSON file {"<login>": {claims...}}, read again on every look-up, so a
//                   test can add accounts while the provider runs
//   OIDC_CLAIMS_IN_ID_TOKEN=1  the ID token carries email and profile claims itself
//   OIDC_EXIT_AFTER_CODE=1  exit once the first authorization code has been sent: the
//                   provider goes away while the browser carries the code back
// listens on a free loopback port and prints one JSON line {"issuer": ...} once it answers.
// Clients register themselves through dynamic registration (POST /reg): each test's Bastion
// gets its own client for its own callback URL.
//
// The login page accepts any password for a login named in OIDC_ACCOUNTS: these are test
// accounts; the point is going through a real provider's pages and protocol.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const host = process.env.OIDC_HOST || 'localhost';
const accountsFile = process.env.OIDC_ACCOUNTS;

function accounts() {
  if (!accountsFile) return {};
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const { port } = server.address();
const issuer = `http://${host}:${port}`;

const provider = new Provider(issuer, {
  // OIDC_CLAIMS_IN_ID_TOKEN=1: the ID token carries the email and profile claims itself
  // (as Google's does). By default, the library's: with an access token issued, they come
  // only from the userinfo endpoint (OIDC Core 5.4), which the client must then ask.
  conformIdTokenClaims: process.env.OIDC_CLAIMS_IN_ID_TOKEN !== '1',
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  scopes: ['openid', 'email', 'profile'],
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  async findAccount(_ctx, id) {
    const claims = accounts()[id];
    if (!claims) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
});

if (process.env.OIDC_EXIT_AFTER_CODE === '1') {
  provider.on('authorization.success', (ctx) => {
    ctx.res.on('finish', () => process.exit(0));
  });
}

// The dev interactions and keys warn on stderr at start; the test log keeps them.
server.on('request', provider.callback());

// Also answer on ::1, which "localhost" may resolve to first; without IPv6 the IPv4 socket
// is enough.
const v6 = createServer(provider.callback());
v6.on('error', () => {});
v6.listen(port, '::1');

process.stdout.write(`${JSON.stringify({ issuer })}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
