-- The two tables of the Handle.Net reference server's SQL storage, in the PostgreSQL layout of
-- its technical manual: one row per homed prefix in nas, one row per handle value in handles.
-- Names and types are what the reference's default statements read and write; do not change
-- them if a reference server is to share the database.
create table if not exists nas (
  na bytea not null primary key
);
create table if not exists handles (
  handle bytea not null,
  idx int4 not null,
  type bytea,
  data bytea,
  ttl_type int2,
  ttl int4,
  timestamp int4,
  refs text,
  admin_read bool,
  admin_write bool,
  pub_read bool,
  pub_write bool,
  primary key (handle, idx)
);
