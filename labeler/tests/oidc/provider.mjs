// A real OpenID Connect provider for the labeler's sign-in tests: panva's certified
// oidc-provider on 127.0.0.1, with its development login and consent pages (any password;
// the login name is the account). Started by the tests as
//   node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// and stopped by them. Accounts: "lead" (labeler_role admin), "rita" (reviewer), anyone else
// (no role claim). Not for anything but tests.
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!redirectUri) {
  console.error("usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI");
  process.exit(2);
}
const roles = { lead: "admin", rita: "reviewer" };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["preferred_username", "name", "labeler_role"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, preferred_username: id, name: id };
        if (roles[id]) claims.labeler_role = roles[id];
        return claims;
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["jielong-labeler-test-only"] },
});
provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${port}`);
});
