-- Benchmark baseline: what Dovecot's Lua passdb costs without any HTTP call.
function script_init() return 0 end
function auth_password_verify(req, pass) return dovecot.auth.PASSDB_RESULT_OK, {} end
function auth_passdb_lookup(req) return dovecot.auth.PASSDB_RESULT_NEXT, "" end
function auth_userdb_lookup(req) return dovecot.auth.USERDB_RESULT_OK, {} end
