// A real OpenID Provider for the tests: oidc-provider 9 (OpenID Certified),
// on loopback, with one confidential client and its development login
// pages (any login name is an account; its claims follow from the name).
//
// usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//                          [BACKCHANNEL_LOGOUT_URI [POST_LOGOUT_REDIRECT_URI]]
// Prints "ready ISSUER" on stdout once it listens, then "backchannel BODY"
// for each back-channel logout request it sends (the tests replay them).
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri, backchannelUri, postLogoutUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const client = {
  client_id: clientId,
  client_secret: clientSecret,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
};
if (backchannelUri) {
  client.backchannel_logout_uri = backchannelUri;
  client.backchannel_logout_session_required = false;
}
if (postLogoutUri) {
  client.post_logout_redirect_uris = [postLogoutUri];
}

const provider = new Provider(issuer, {
  clients: [client],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@example.org`, email_verified: true, name: `User ${id}` }),
  }),
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // Since 9.7 outgoing requests to special-use addresses are refused; the
  // tests' nginx is on loopback. Loopback only, and each back-channel
  // logout request is shown so that a test can replay it.
  fetch: (url, options) => {
    if (new URL(url).hostname !== '127.0.0.1') {
      throw new Error(`tests only: no request to ${url}`);
    }
    delete options.dispatcher;
    if (options.body instanceof URLSearchParams) {
      process.stdout.write(`backchannel ${options.body.toString()}\n`);
    }
    return globalThis.fetch(url, options);
  },
  cookies: { keys: ['ngx-sessions-tests-only'] },
});
// Loopback only, plain HTTP: tests only.
provider.proxy = false;

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
