-- role: inventory
-- inventory_reserve() (one reservation, raising MR001 on a shortage) has had no caller since
-- every engine went through inventory_try_reserve() / inventory_reserve_many() (003). Dropped so
-- the reservation logic lives in one function only.
DROP FUNCTION IF EXISTS inventory_reserve(bigint, text[], integer[], bigint);
