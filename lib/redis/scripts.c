/* The Lua scripts Redis runs for the directory. They are loaded with SCRIPT
 * LOAD on every connection and run with EVALSHA (EVAL when Redis answers
 * NOSCRIPT). Key families under the prefix P (revtun_redis(7)):
 *
 *   P i:<instance>   hash  token, gen, addr       the claim; PX ttl
 *   P in:<instance>  hash  node key -> claim       what it holds; PX ttl
 *   P ic:<instance>  hash  cluster key -> claim    PX ttl
 *   P n:<node key>   set   instances that claim the node
 *   P c:<cluster key> set  instances that claim the cluster
 *   P seq            string counter behind every generation and claim
 *   P inv            pub/sub channel: keys whose answers changed
 *
 * Everything read back from Redis is checked here before it is used or
 * returned: types first (a key of another type is garbage, not an error that
 * aborts the script), then lengths with HSTRLEN and SCARD, so a 100 MB string
 * or a million-member set is refused without being read. The client checks
 * every answer again (decode.c). Numbers are handled as decimal strings:
 * Lua's numbers are doubles. */
#include "rr_int.h"

/* Is the claim of instance I still held by this token? */
#define OWNS_TOKEN                                                                                 \
  "local function owns()\n"                                                                        \
  "  return redis.call('TYPE', KEYS[1]).ok == 'hash' and\n"                                        \
  "    redis.call('HSTRLEN', KEYS[1], 'token') == #ARGV[1] and\n"                                  \
  "    redis.call('HGET', KEYS[1], 'token') == ARGV[1]\n"                                          \
  "end\n"

/* KEYS: i:I in:I ic:I seq; ARGV: token addr ttl channel.
 * A new generation wipes what the previous one published, atomically. */
static const char claim[] =
    OWNS_TOKEN "local t = redis.call('TYPE', KEYS[1]).ok\n"
               "if t ~= 'none' and not owns() then\n"
               "  return {t == 'hash' and 'busy' or 'bad'}\n"
               "end\n"
               "local st = redis.call('TYPE', KEYS[4]).ok\n"
               "if st ~= 'none' and (st ~= 'string' or redis.call('STRLEN', KEYS[4]) > 19) then\n"
               "  return {'bad'}\n"
               "end\n"
               "local gen = redis.pcall('INCR', KEYS[4])\n"
               "if type(gen) ~= 'number' then return {'bad'} end\n"
               "gen = string.format('%d', gen)\n"
               "redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])\n"
               "redis.call('HSET', KEYS[1], 'token', ARGV[1], 'gen', gen, 'addr', ARGV[2])\n"
               "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
               "redis.call('PUBLISH', ARGV[4], '*')\n"
               "return {'ok', gen}\n";

/* KEYS: i:I in:I ic:I seq; ARGV: token ttl channel prefix instance, then
 * (op, kind, key) triples, op '+' or '-', kind 'n' or 'c'.
 * Each '+' takes a fresh claim number (one INCRBY per call reserves them):
 * the latest claim of a node wins. The instance's own hashes take one HSET
 * and one HDEL per kind and call (at most 2 x 1000 values: within what
 * unpack() can pass); the index sets, one SADD or SREM per key. */
static const char publish[] = OWNS_TOKEN
    "if redis.call('TYPE', KEYS[1]).ok == 'none' then return {'gone'} end\n"
    "if not owns() then return {'fenced'} end\n"
    "local items, size, bad, adds = {}, 0, 0, 0\n"
    "local set, del = {n = {}, c = {}}, {n = {}, c = {}}\n"
    "for i = 6, #ARGV - 2, 3 do\n"
    "  if ARGV[i] == '+' then adds = adds + 1 end\n"
    "end\n"
    "local claim = adds > 0 and redis.call('INCRBY', KEYS[4], adds) - adds or 0\n"
    "for i = 6, #ARGV - 2, 3 do\n"
    "  local op, kind, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  local idx = ARGV[4] .. kind .. ':' .. key\n"
    "  local r\n"
    "  if op == '+' then\n"
    "    claim = claim + 1\n"
    "    local t = set[kind]\n"
    "    t[#t + 1] = key\n"
    "    t[#t + 1] = string.format('%d', claim)\n"
    "    r = redis.pcall('SADD', idx, ARGV[5])\n"
    "  else\n"
    "    local t = del[kind]\n"
    "    t[#t + 1] = key\n"
    "    r = redis.pcall('SREM', idx, ARGV[5])\n"
    "  end\n"
    "  if type(r) == 'table' then bad = bad + 1 end\n"
    "  size = size + #key + 8\n"
    "  if size <= 65536 then items[#items + 1] = kind .. #key .. ':' .. key end\n"
    "end\n"
    "for kind, own in pairs({n = KEYS[2], c = KEYS[3]}) do\n"
    "  if #set[kind] > 0 and type(redis.pcall('HSET', own, unpack(set[kind]))) == 'table' then\n"
    "    bad = bad + #set[kind] / 2\n"
    "  end\n"
    "  if #del[kind] > 0 and type(redis.pcall('HDEL', own, unpack(del[kind]))) == 'table' then\n"
    "    bad = bad + #del[kind]\n"
    "  end\n"
    "end\n"
    "for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end\n"
    "if size > 0 then\n"
    "  redis.call('PUBLISH', ARGV[3], size <= 65536 and table.concat(items) or '*')\n"
    "end\n"
    "return {'ok', bad}\n";

/* KEYS: i:I in:I ic:I; ARGV: token ttl */
static const char heartbeat[] =
    OWNS_TOKEN "if redis.call('TYPE', KEYS[1]).ok == 'none' then return {'gone'} end\n"
               "if not owns() then return {'fenced'} end\n"
               "for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end\n"
               "return {'ok'}\n";

/* KEYS: i:I in:I ic:I; ARGV: token channel prefix instance.
 * Takes this instance out of the index sets (up to 10,000 keys of each kind;
 * lookups drop the rest as stale) and deletes its claim. */
static const char release[] = OWNS_TOKEN
    "if redis.call('TYPE', KEYS[1]).ok == 'none' then return {'gone'} end\n"
    "if not owns() then return {'fenced'} end\n"
    "for k, kind in ipairs({'n', 'c'}) do\n"
    "  local own = KEYS[k + 1]\n"
    "  if redis.call('TYPE', own).ok == 'hash' and redis.call('HLEN', own) <= 10000 then\n"
    "    for _, key in ipairs(redis.call('HKEYS', own)) do\n"
    "      redis.pcall('SREM', ARGV[3] .. kind .. ':' .. key, ARGV[4])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])\n"
    "redis.call('PUBLISH', ARGV[2], '*')\n"
    "return {'ok'}\n";

/* ARGV: prefix kind key max_holders max_instance max_addr.
 * Among the instances that claim the key, keep those whose claim is alive
 * and that still hold the key in the generation alive now (a restart wiped
 * older ones); answer the latest claim, ties to the smaller instance id.
 * Members whose instance is gone or no longer holds the key are removed. */
static const char lookup[] =
    "local p, kind, key = ARGV[1], ARGV[2], ARGV[3]\n"
    "local maxh, maxid, maxaddr = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local idx = p .. kind .. ':' .. key\n"
    "local t = redis.call('TYPE', idx).ok\n"
    "if t == 'none' then return {'none', 0, 0} end\n"
    "if t ~= 'set' then return {'bad', 1} end\n"
    "local n = redis.call('SCARD', idx)\n"
    "if n > maxh then return {'big', n} end\n"
    "local function num(s)\n"
    "  return type(s) == 'string' and #s <= 19 and s:match('^[1-9]%d*$') ~= nil\n"
    "end\n"
    "local best, bclaim, bgen, baddr\n"
    "local stale, bad = 0, 0\n"
    "for _, inst in ipairs(redis.call('SMEMBERS', idx)) do\n"
    "  if #inst == 0 or #inst > maxid or inst:find('[^!-~]') then\n"
    "    bad = bad + 1\n"
    "  else\n"
    "    local ik, hk = p .. 'i:' .. inst, p .. 'i' .. kind .. ':' .. inst\n"
    "    local it, ht = redis.call('TYPE', ik).ok, redis.call('TYPE', hk).ok\n"
    "    if it == 'none' or ht == 'none' then\n"
    "      redis.call('SREM', idx, inst)\n"
    "      stale = stale + 1\n"
    "    elseif it ~= 'hash' or ht ~= 'hash' then\n"
    "      bad = bad + 1\n"
    "    else\n"
    "      local cl = redis.call('HSTRLEN', hk, key)\n"
    "      if cl == 0 then\n"
    "        redis.call('SREM', idx, inst)\n"
    "        stale = stale + 1\n"
    "      elseif cl > 19 or redis.call('HSTRLEN', ik, 'gen') > 19 or\n"
    "          redis.call('HSTRLEN', ik, 'addr') > maxaddr then\n"
    "        bad = bad + 1\n"
    "      else\n"
    "        local claim = redis.call('HGET', hk, key)\n"
    "        local gen, addr = unpack(redis.call('HMGET', ik, 'gen', 'addr'))\n"
    "        if not (num(claim) and num(gen) and type(addr) == 'string' and #addr > 0\n"
    "            and not addr:find('[^!-~]')) then\n"
    "          bad = bad + 1\n"
    "        elseif best == nil or #claim > #bclaim or (#claim == #bclaim and claim > bclaim)\n"
    "            or (claim == bclaim and inst < best) then\n"
    "          best, bclaim, bgen, baddr = inst, claim, gen, addr\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if best then return {'ok', best, baddr, bgen, bclaim, stale, bad} end\n"
    "return {'none', stale, bad}\n";

const char *const rr_script_text[RR_N_SCRIPTS] = {
    [RR_SCRIPT_CLAIM] = claim,     [RR_SCRIPT_PUBLISH] = publish, [RR_SCRIPT_HEARTBEAT] = heartbeat,
    [RR_SCRIPT_RELEASE] = release, [RR_SCRIPT_LOOKUP] = lookup,
};
