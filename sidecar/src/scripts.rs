//! The Lua scripts the side-car runs (`EVAL`): each checks what it finds
//! before it changes anything.

/// Replaces KEYS[1] only if it still holds ARGV[1] (empty: nothing): by
/// ARGV[2] with a TTL of ARGV[3] ms (0: none), or deletes it when ARGV[2]
/// is empty. 1 if done. A value of another type matches nothing.
pub(crate) const SWAP: &str = "local v = redis.pcall('GET', KEYS[1]) \
    if type(v) == 'table' then return 0 end if v == false then v = '' end \
    if v ~= ARGV[1] then return 0 end \
    if ARGV[2] == '' then redis.call('DEL', KEYS[1]) \
    elseif ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) \
    else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 1";

/// Lists ARGV[1] -> ARGV[2] in the user index KEYS[1], drops ARGV[4..]
/// from it, and makes it live as long as its longest session (ARGV[3] ms,
/// 0: for ever; NX sets the first expiry, GT only extends it). A value of
/// another type there is replaced.
pub(crate) const INDEX: &str = "local t = redis.call('TYPE', KEYS[1]).ok \
    if t ~= 'hash' and t ~= 'none' then redis.call('DEL', KEYS[1]) end \
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
    for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end \
    if ARGV[3] == '0' then redis.call('PERSIST', KEYS[1]) \
    else redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX') redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT') end \
    return 1";

/// The value of KEYS[1] to adopt (a value of another type reads as empty).
/// ARGV[3] `0`: what is there, or ARGV[1] stored when nothing is. `1`:
/// ARGV[2] was found unsound: it is replaced by ARGV[1], unless someone
/// replaced it meanwhile.
pub(crate) const ADOPT: &str = "local v = redis.pcall('GET', KEYS[1]) \
    if type(v) == 'table' then v = '' end \
    if v and (ARGV[3] == '0' or v ~= ARGV[2]) then return v end \
    redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]";
