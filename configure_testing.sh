# Source this file (`source configure_testing.sh`) to use ./test_database.db.
unset DEVELOPMENT_SETTINGS
export TESTING_SETTINGS=1
