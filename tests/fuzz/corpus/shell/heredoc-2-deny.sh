cat <<EOF | sh
rm -rf /etc
EOF