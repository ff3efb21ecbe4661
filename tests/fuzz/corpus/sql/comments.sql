/* cleanup */ DELETE -- all
FROM users